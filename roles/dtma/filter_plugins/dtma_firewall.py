"""Filter of the dtma role: the agent firewall's allowed sources, checked and split by family
(nftables matches IPv4 and IPv6 sources with different expressions)."""

from __future__ import annotations

import ipaddress
from typing import Any


def dtma_firewall_sources(sources: Any) -> dict[str, list[str]]:
    """{'ipv4': [...], 'ipv6': [...], 'problems': [...]}: each source an address or a network
    in CIDR form; a network with host bits set is refused rather than silently widened."""
    found: dict[str, list[str]] = {"ipv4": [], "ipv6": [], "problems": []}
    if sources is None:
        return found
    if isinstance(sources, str) or not isinstance(sources, list):
        found["problems"].append("dtma_agent_allowed_sources must be a list of CIDRs")
        return found
    for source in sources:
        text = str(source).strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as error:
            hint = ""
            try:
                hint = f" (did you mean {ipaddress.ip_network(text, strict=False)}?)"
            except ValueError:
                pass
            found["problems"].append(f"{text!r} in dtma_agent_allowed_sources: {error}{hint}")
            continue
        # A single address as nft lists it back (without /32 or /128).
        single = network.prefixlen == network.max_prefixlen
        found[f"ipv{network.version}"].append(str(network.network_address if single else network))
    return found


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"dtma_firewall_sources": dtma_firewall_sources}
