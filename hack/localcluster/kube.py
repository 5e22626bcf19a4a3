"""A thin dict-in/dict-out REST client on top of the official ``kubernetes`` client.

The official client does authentication (client certs from a kubeconfig), TLS and
connection pooling; this wrapper keeps objects as plain JSON dicts with the API's own
field names, which is what the node agent and the bootstrap manifests work with, and
offers a list-then-watch iterator with resourceVersion bookkeeping (no polling).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import kubernetes

JSON = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, body: str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        try:
            self.reason = json.loads(body).get("reason", "")
            self.message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            self.reason, self.message = "", body
        super().__init__(f"{method} {path}: {status} {self.message}")


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): re-list."""


# Dead connections are noticed within ~25 s instead of minutes: a watch whose peer vanished
# (e.g. after a 100% loss fault on the node, where TCP retransmissions back off to 2 min) is
# dropped and re-listed, and a request stuck with unacknowledged data fails and is retried.
SOCKET_OPTIONS = [
    (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3),
    (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 25_000),
]


class Kube:
    def __init__(self, kubeconfig: str | Path, context: str | None = None) -> None:
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(kubeconfig), context=context, client_configuration=cfg
        )
        cfg.socket_options = SOCKET_OPTIONS
        self.api = kubernetes.client.ApiClient(cfg)
        self.host = cfg.host

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] = 30,
        stream: bool = False,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        m, url, hdrs, b, post = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(m, url, hdrs, b, post, _request_timeout=timeout).response
        if resp.status >= 400:
            data = resp.read().decode(errors="replace")
            resp.release_conn()
            raise ApiError(resp.status, data, method, path)
        if stream:
            return resp
        data = resp.read()
        resp.release_conn()
        return json.loads(data) if data else None

    # convenience -------------------------------------------------------------------------
    def get(self, path: str, **query: Any) -> JSON:
        result: JSON = self.request("GET", path, query=query)
        return result

    def get_or_none(self, path: str) -> JSON | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, body: JSON, **query: Any) -> JSON:
        result: JSON = self.request("POST", path, body=body, query=query)
        return result

    def patch(self, path: str, body: Any, kind: str = "merge", **query: Any) -> JSON:
        ctype = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        result: JSON = self.request("PATCH", path, body=body, content_type=ctype, query=query)
        return result

    def apply(self, path: str, body: JSON, manager: str = "kdoctor-cluster") -> JSON:
        """Server-side apply (``path`` is the object's own path)."""
        result: JSON = self.request(
            "PATCH",
            path,
            body=body,
            content_type="application/apply-patch+yaml",
            query={"fieldManager": manager, "force": "true"},
        )
        return result

    def delete(self, path: str, body: JSON | None = None, **query: Any) -> JSON | None:
        try:
            result: JSON | None = self.request("DELETE", path, body=body, query=query)
            return result
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list_and_watch(
        self,
        path: str,
        *,
        timeout_seconds: int = 300,
        stop: Any = None,
        **query: Any,
    ) -> Iterator[tuple[str, JSON]]:
        """Yield ("SYNC", list) once, then ("ADDED"|"MODIFIED"|"DELETED", object) forever,
        re-listing (and yielding a new "SYNC") when the watch expires. ``stop`` is an
        optional threading.Event that ends the iteration between events."""
        while stop is None or not stop.is_set():
            try:
                listing = self.get(path, **query)
            except Exception:
                time.sleep(1)
                continue
            rv = listing["metadata"]["resourceVersion"]
            yield "SYNC", listing
            try:
                while stop is None or not stop.is_set():
                    for etype, obj in self.watch(path, rv, timeout_seconds, **query):
                        if etype == "BOOKMARK":
                            rv = obj["metadata"]["resourceVersion"]
                            continue
                        rv = obj["metadata"]["resourceVersion"]
                        yield etype, obj
                        if stop is not None and stop.is_set():
                            return
            except WatchExpired:
                continue
            except Exception:
                time.sleep(1)
                continue

    def watch(
        self, path: str, rv: str, timeout_seconds: int = 300, **query: Any
    ) -> Iterator[tuple[str, JSON]]:
        q = dict(query)
        q.update(
            watch="true",
            resourceVersion=rv,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds),
        )
        resp = self.request("GET", path, query=q, timeout=(10, timeout_seconds + 30), stream=True)
        try:
            buf = b""
            for chunk in resp.stream(amt=None, decode_content=False):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        status = event["object"]
                        if status.get("code") == 410:
                            raise WatchExpired(status.get("message", ""))
                        raise ApiError(status.get("code", 500), json.dumps(status), "WATCH", path)
                    yield event["type"], event["object"]
        finally:
            resp.release_conn()


def obj_path(api_version: str, kind_plural: str, name: str = "", namespace: str = "") -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = f"/namespaces/{quote(namespace)}" if namespace else ""
    return f"{base}{ns}/{kind_plural}" + (f"/{quote(name)}" if name else "")


PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Service": "services",
    "Deployment": "deployments",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Pod": "pods",
    "Job": "jobs",
    "Secret": "secrets",
    "IngressClass": "ingressclasses",
    "CustomResourceDefinition": "customresourcedefinitions",
    "NetworkAttachmentDefinition": "network-attachment-definitions",
}


def path_of(obj: JSON) -> str:
    md = obj["metadata"]
    return obj_path(obj["apiVersion"], PLURALS[obj["kind"]], md["name"], md.get("namespace", ""))
