"""API request and response shapes (pydantic), one module per resource."""
