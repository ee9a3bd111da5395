"""E-mail addresses hidden by Cloudflare's e-mail obfuscation.

Cloudflare replaces each address of a page by ``<a class="__cf_email__"
data-cfemail="HEX">[email protected]</a>`` (or a link to
``/cdn-cgi/l/email-protection#HEX``) and decodes it with JavaScript: the first
byte of HEX is a key, every following byte XOR the key is a character.

``wfcrawl.scripts.cfemail:emails`` (entry point ``cfemail``) sets the value
``emails`` (``args.name`` renames it): the decoded addresses, in page order,
without duplicates, for later nodes' ``var: emails`` fields. It yields no item.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from wfcrawl.workflow import ScriptContext, Value

_PROTECTION = "/cdn-cgi/l/email-protection#"


def decode(encoded: str) -> str:
    """The address of one ``data-cfemail`` value; ValueError when it is not hex."""
    data = bytes.fromhex(encoded)
    if not data:
        raise ValueError("empty data-cfemail")
    key = data[0]
    return bytes(b ^ key for b in data[1:]).decode("utf-8")


def encode(address: str, key: int = 0x42) -> str:
    """The ``data-cfemail`` value of an address (for fixtures and tests)."""
    return bytes([key, *(b ^ key for b in address.encode("utf-8"))]).hex()


def emails(response: Any, context: ScriptContext) -> Iterator[Value]:
    found: dict[str, None] = {}
    hexes = response.xpath("//@data-cfemail").getall()
    hexes += [h.split("#", 1)[1] for h in response.xpath("//a/@href").getall() if _PROTECTION in h]
    for encoded in hexes:
        try:
            found.setdefault(decode(encoded.strip()), None)
        except ValueError:
            continue  # not an obfuscated address: nothing to decode
    yield Value(context.args.get("name", "emails"), list(found))
