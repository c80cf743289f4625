"""OpenAI Conversations API <-> the canonical chat format (domain/proxy/chat.py).

Pure translation: conversation objects, the bodies of `POST /v1/conversations`,
`POST /v1/conversations/{id}` and `POST /v1/conversations/{id}/items`, and the item list
pages of `GET /v1/conversations/{id}/items` (the same page serves
`GET /v1/responses/{id}/input_items`). The gateway keeps the conversation in its event
log and chooses the ids.

Items come from canonical messages, each with a base id the caller chooses (stable for
that message: e.g. its event id in hex). One message gives one or more items:
`msg_<base>` for its text, `fc_<base>_<k>` for an assistant's k-th tool call,
`fco_<base>` for a tool result; `item_base` maps an item id back to its base (for
`after` cursors and `GET .../items/{item_id}`). An assistant turn recorded from a
response uses the response's base, so its items keep the ids the response showed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.proxy.chat import Message, invalid
from domain.proxy.responses_wire import (
    function_call_item,
    item_ids,
    message_item,
    parse_input_items,
    parse_metadata,
)

MAX_ITEMS_PER_CALL = 20  # OpenAI's bound on items added in one call


@dataclass(frozen=True, slots=True)
class ConversationItems:
    """Items to add to a conversation: as given (to record) and as canonical messages
    (system and developer messages have role "system")."""

    items: tuple[dict[str, Any], ...] = ()
    messages: tuple[Message, ...] = ()


@dataclass(frozen=True, slots=True)
class ConversationCreate:
    """A parsed `POST /v1/conversations`."""

    metadata: dict[str, str] = field(default_factory=dict)
    items: ConversationItems = field(default_factory=ConversationItems)


def parse_conversation_create(body: Mapping[str, Any]) -> ConversationCreate:
    """`{"metadata": {...}?, "items": [...]?}`; an empty body creates an empty one."""
    return ConversationCreate(
        metadata=parse_metadata(body.get("metadata")),
        items=_items(body.get("items"), required=False),
    )


def parse_conversation_items(body: Mapping[str, Any]) -> ConversationItems:
    """The body of `POST /v1/conversations/{id}/items`: `{"items": [...]}` (1 to 20)."""
    return _items(body.get("items"), required=True)


def parse_conversation_update(body: Mapping[str, Any]) -> dict[str, str]:
    """The body of `POST /v1/conversations/{id}`: the new metadata (it replaces the old)."""
    if "metadata" not in body:
        raise invalid("metadata is required", "metadata")
    return parse_metadata(body["metadata"])


def _items(value: Any, *, required: bool) -> ConversationItems:
    if value is None and not required:
        return ConversationItems()
    if not isinstance(value, list) or (required and not value):
        raise invalid("items must be a non-empty list of items", "items")
    if len(value) > MAX_ITEMS_PER_CALL:
        raise invalid(f"at most {MAX_ITEMS_PER_CALL} items may be added at a time", "items")
    return ConversationItems(items=tuple(value), messages=tuple(parse_input_items(value, "items")))


def render_conversation(
    conversation_id: str, created_at: int, metadata: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "id": conversation_id,
        "object": "conversation",
        "created_at": created_at,
        "metadata": dict(metadata) if metadata else {},
    }


def render_conversation_deleted(conversation_id: str) -> dict[str, Any]:
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


def message_items(base: str, message: Message) -> list[dict[str, Any]]:
    """The items one canonical message shows as (see the module docstring for ids)."""
    if message.role == "tool":
        return [
            {
                "type": "function_call_output",
                "id": f"fco_{base}",
                "call_id": message.tool_call_id or "",
                "output": message.content,
                "status": "completed",
            }
        ]
    message_id, call_prefix = item_ids(base)
    if message.role != "assistant":
        return [
            {
                "type": "message",
                "id": message_id,
                "status": "completed",
                "role": message.role,
                "content": [{"type": "input_text", "text": message.content}],
            }
        ]
    items = [message_item(message_id, message.content)] if message.content else []
    if not message.tool_calls and not items:
        items.append(message_item(message_id, ""))
    items.extend(
        function_call_item(f"{call_prefix}{k}", call) for k, call in enumerate(message.tool_calls)
    )
    return items


def conversation_items(entries: Iterable[tuple[str, Message]]) -> list[dict[str, Any]]:
    """The items of `(base id, message)` pairs, in the order given."""
    items: list[dict[str, Any]] = []
    for base, message in entries:
        items.extend(message_items(base, message))
    return items


def item_base(item_id: str) -> str | None:
    """The base id an item id was made from, or None if it is not one of ours."""
    for prefix in ("msg_", "fco_"):
        if item_id.startswith(prefix):
            return item_id[len(prefix) :] or None
    if item_id.startswith("fc_"):
        base, sep, k = item_id[3:].rpartition("_")
        return base if sep and base and k.isdigit() else None
    return None


def render_item_list(items: list[dict[str, Any]], *, has_more: bool = False) -> dict[str, Any]:
    """One page of items, already in the order asked for (`order`), already cut to
    `limit` after `after`; `has_more` tells whether items remain beyond it. An empty
    page has null first_id/last_id, as OpenAI's list endpoints answer."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }
