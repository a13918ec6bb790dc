"""The store of overlay networks: etcd v3 through its JSON gateway (POST /v3/..., keys and values
base64, 64-bit integers as strings), with the standard library only.

What fastnet keeps there (PREFIX, one tree per overlay network name):

    <PREFIX>/vni/<vni>                  -> network name         (who holds a VNI; create-only)
    <PREFIX>/net/<name>/config          -> {"subnet", "vni"}    (the first host to join writes it)
    <PREFIX>/net/<name>/ip/<address>    -> {"host", "project", "container"}
                                           an address claimed by compare-and-swap (create-only);
                                           not leased: a host that re-joins gets it back
    <PREFIX>/net/<name>/ep/<address>    -> {"host", "mac", "name", "aliases", "project"}
                                           a running container, under its host's lease

Every call is one HTTP request with a short timeout; a store that cannot be reached raises
StoreError with one line naming the URL.
"""
from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Iterator

from ..datapath.errors import FastnetError

PREFIX = "/fastnet/v1"
TIMEOUT = 3.0


class StoreError(FastnetError):
    pass


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def prefix_end(prefix: str) -> str:
    """The range_end that covers every key starting with `prefix`."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


@dataclass(frozen=True)
class Event:
    key: str
    value: str | None  # None: deleted


class Store:
    def __init__(self, url: str, timeout: float = TIMEOUT):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, body: dict, timeout: float | None = None):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            try:
                detail = json.loads(detail).get("message") or json.loads(detail).get("error") or detail
            except ValueError:
                pass
            raise StoreError(f"store {self.url}: {path}: {detail}") from None
        except (urllib.error.URLError, OSError, socket.timeout) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreError(f"store {self.url} cannot be reached: {reason}") from None

    def _call(self, path: str, body: dict) -> dict:
        with self._post(path, body) as resp:
            try:
                return json.loads(resp.read() or b"{}")
            except (ValueError, OSError) as exc:
                raise StoreError(f"store {self.url}: {path}: unreadable answer ({exc})") from None

    # -- keys -------------------------------------------------------------------------------
    def get_prefix(self, prefix: str) -> tuple[dict[str, str], int]:
        """Every key under `prefix` and its value, and the store's revision."""
        out = self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        kvs = {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in out.get("kvs", [])}
        return kvs, int(out.get("header", {}).get("revision", 0))

    def get(self, key: str) -> str | None:
        out = self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = out.get("kvs", [])
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def put(self, key: str, value: str, lease: int | None = None) -> None:
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        self._call("/v3/kv/put", body)

    def create(self, key: str, value: str) -> str | None:
        """Write `key` only if it does not exist (compare-and-swap on its creation); None when
        this call created it, else the value it already has."""
        out = self._call("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
            "failure": [{"request_range": {"key": _b64(key)}}],
        })
        if out.get("succeeded"):
            return None
        kvs = out["responses"][0]["response_range"].get("kvs", [])
        return _unb64(kvs[0].get("value", "")) if kvs else ""

    def delete_if(self, key: str, value: str) -> bool:
        """Delete `key` only if it holds `value` (a claim of ours, never another's)."""
        out = self._call("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(value)}],
            "success": [{"request_delete_range": {"key": _b64(key)}}],
        })
        return bool(out.get("succeeded"))

    def delete(self, key: str) -> None:
        self._call("/v3/kv/deleterange", {"key": _b64(key)})

    # -- leases -----------------------------------------------------------------------------
    def grant(self, ttl: int) -> int:
        return int(self._call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew the lease; its remaining TTL (0 or less: it is gone, keys and all)."""
        out = self._call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(out.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        try:
            self._call("/v3/lease/revoke", {"ID": str(lease)})
        except StoreError as exc:
            if "not found" not in str(exc):
                raise

    # -- watch ------------------------------------------------------------------------------
    def watch(self, prefix: str, start_revision: int, idle: float = 30.0) -> Iterator[list[Event]]:
        """The changes under `prefix` from `start_revision` on, a batch per store event, until
        the connection ends (StoreError; `idle` seconds without a byte count as an end)."""
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        resp = self._post("/v3/watch", body, timeout=idle)
        try:
            decoder = json.JSONDecoder()
            buffer = ""
            while True:
                try:
                    chunk = resp.read1(65536)
                except (OSError, socket.timeout) as exc:
                    raise StoreError(f"store {self.url}: watch ended: {exc}") from None
                if not chunk:
                    raise StoreError(f"store {self.url}: watch ended")
                buffer += chunk.decode()
                while True:
                    buffer = buffer.lstrip()
                    if not buffer:
                        break
                    try:
                        message, end = decoder.raw_decode(buffer)
                    except ValueError:
                        break  # the rest of the object is still on its way
                    buffer = buffer[end:]
                    result = message.get("result", {})
                    if "error" in message or result.get("canceled"):
                        raise StoreError(f"store {self.url}: watch cancelled: {message}")
                    events = [Event(_unb64(e["kv"]["key"]),
                                    None if e.get("type") == "DELETE" else _unb64(e["kv"].get("value", "")))
                              for e in result.get("events", [])]
                    yield events
        finally:
            resp.close()
