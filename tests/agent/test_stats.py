"""`GET /containers?stats=true`: CPU and memory of running tool instances from Docker's
one-shot stats. The controller's own dockerd answers stats without figures on this
machine (its containers' cgroups are not readable from it), so the figures are checked
here from what a droplet's engine answers, and on the sandbox's engines in
tests/monitoring/test_metrics.py (a busy tool instance against an idle one)."""

from __future__ import annotations

from dtma_agent.stats import CpuBaselines, container_stats, memory_bytes

from .conftest import AgentProcess

# A one-shot answer of a droplet's dockerd (cgroup v1), trimmed to what the agent reads.
ONE_SHOT = {
    "read": "2026-12-01T09:58:01.123456789Z",
    "cpu_stats": {
        "cpu_usage": {"total_usage": 21_218_251, "percpu_usage": [21_218_251, 0]},
        "system_cpu_usage": 1_655_880_000_000,
        "online_cpus": 2,
    },
    "memory_stats": {
        "usage": 471_040,
        "limit": 25_276_063_744,
        "stats": {"total_inactive_file": 40_960, "rss": 118_784},
    },
}


def _later(raw: dict, used_ns: int, elapsed_ns: int) -> dict:
    cpu = raw["cpu_stats"]
    usage = cpu["cpu_usage"]["total_usage"] + used_ns
    return {
        **raw,
        "cpu_stats": {
            **cpu,
            "cpu_usage": {**cpu["cpu_usage"], "total_usage": usage},
            "system_cpu_usage": cpu["system_cpu_usage"] + elapsed_ns,
        },
    }


def test_cpu_is_the_share_since_the_previous_read_as_docker_stats_counts_it() -> None:
    baselines = CpuBaselines()
    first = container_stats(baselines, "abc", ONE_SHOT)
    assert first.cpu_percent is None  # no baseline yet
    # The system counter adds up every CPU: 2 CPUs for 1 s = 2e9 ns. Half of one CPU used.
    second = container_stats(baselines, "abc", _later(ONE_SHOT, 500_000_000, 2_000_000_000))
    assert second.cpu_percent == 50.0
    # A container restarted in between (its counter went back) has no figure, once.
    assert baselines.percent("abc", ONE_SHOT["cpu_stats"]) is None
    baselines.forget_all_but(set())
    assert baselines.percent("abc", ONE_SHOT["cpu_stats"]) is None


def test_memory_leaves_out_the_reclaimable_page_cache() -> None:
    assert memory_bytes(ONE_SHOT["memory_stats"]) == 471_040 - 40_960
    assert memory_bytes({"usage": 1000, "stats": {"inactive_file": 200}}) == 800  # cgroup v2
    assert memory_bytes({}) is None  # an engine that cannot read the cgroup
    stats = container_stats(CpuBaselines(), "abc", ONE_SHOT)
    assert stats.memory_limit_bytes == 25_276_063_744
    assert stats.read_at == ONE_SHOT["read"]


def test_running_instances_carry_stats_and_stopped_ones_none(
    agent: AgentProcess, containers: dict[str, str]
) -> None:
    with agent.client() as client:
        answer = client.get("/containers", params={"managed": "true", "stats": "true"})
        plain = client.get("/containers", params={"managed": "true"})
    assert answer.status_code == 200, answer.text
    listed = {c["name"]: c for c in answer.json()["containers"]}
    assert listed[containers["chatty"]]["state"] == "running"
    assert set(listed[containers["chatty"]]["stats"]) == {
        "cpu_percent", "memory_bytes", "memory_limit_bytes", "read_at",
    }  # fmt: skip
    assert listed[containers["stopped"]]["stats"] is None
    # Without stats=true nothing is asked of the engine and no container carries any.
    assert all(c["stats"] is None for c in plain.json()["containers"])


def test_stats_must_be_a_boolean(agent: AgentProcess) -> None:
    with agent.client() as client:
        answer = client.get("/containers", params={"stats": "lots"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"
