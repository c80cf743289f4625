"""The provider adapters a configuration names, sharing one pooled HTTP client."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.providers.anthropic import AnthropicProvider
from adapters.providers.echo import EchoProvider
from adapters.providers.http import HttpClient
from adapters.providers.openai import OpenAIProvider
from app.proxy_config import ProxyConfig
from domain.proxy.ports import ChatProvider


def build_providers(
    config: ProxyConfig, client: HttpClient, env: Mapping[str, str]
) -> dict[str, ChatProvider]:
    """One adapter per configured provider; keys are read from the environment here,
    once, and live only inside the adapters' request headers."""
    out: dict[str, ChatProvider] = {}
    for name, provider in config.providers.items():
        key = provider.api_key(env)
        if provider.kind == "openai":
            out[name] = OpenAIProvider(name, client, base_url=provider.base_url, api_key=key)
        elif provider.kind == "anthropic":
            out[name] = AnthropicProvider(name, client, base_url=provider.base_url, api_key=key)
        else:
            echo = EchoProvider()
            echo.name = name
            out[name] = echo
    return out
