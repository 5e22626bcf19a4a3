"""Watches in background threads feeding one queue: list, then watch from the list's
resourceVersion, and list again when the stream ends or expires (410 Gone)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from kubectl_kdoctor.kube.errors import translate


class Watcher(threading.Thread):
    """Puts ``(tag, type, object)`` on ``out`` for every object of ``list_fn`` (a
    ``list_namespaced_*`` method) matching ``selector``; ``(tag, "ERROR", exc)`` when the API
    refuses. A first list is delivered as ``ADDED`` events, then ``("SYNCED", None)``."""

    def __init__(
        self,
        tag: str,
        list_fn: Callable[..., Any],
        namespace: str,
        selector: str,
        out: queue.Queue[tuple[str, str, Any]],
        timeout: float | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"watch-{tag}")
        self.tag, self.list_fn, self.namespace, self.selector, self.out = (
            tag,
            list_fn,
            namespace,
            selector,
            out,
        )
        self.timeout = timeout
        self._stop_evt = threading.Event()
        self._w: Any = None

    def stop(self) -> None:
        self._stop_evt.set()
        if self._w is not None:
            self._w.stop()

    def _list(self) -> str:
        kw = {"_request_timeout": self.timeout} if self.timeout else {}
        lst = self.list_fn(self.namespace, label_selector=self.selector, **kw)
        for obj in lst.items:
            self.out.put((self.tag, "ADDED", obj))
        return str(lst.metadata.resource_version)

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        rv = ""
        first = True
        while not self._stop_evt.is_set():
            try:
                if not rv:
                    rv = self._list()
                    if first:
                        self.out.put((self.tag, "SYNCED", None))
                        first = False
                self._w = watch.Watch()
                for ev in self._w.stream(
                    self.list_fn,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=rv,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop_evt.is_set():
                        return
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        rv = ""
                        break
                    rv = resource_version(obj) or rv
                    if ev["type"] != "BOOKMARK":
                        self.out.put((self.tag, ev["type"], obj))
            except ApiException as exc:
                if exc.status == 410:
                    rv = ""
                    continue
                self.out.put((self.tag, "ERROR", translate(exc, f"watch {self.tag}")))
                return
            except Exception as exc:
                if self._stop_evt.is_set():
                    return
                self.out.put((self.tag, "ERROR", translate(exc, f"watch {self.tag}")))
                return


def resource_version(obj: Any) -> str:
    """An object's resourceVersion, whether the client deserialised it or not (bookmarks)."""
    if isinstance(obj, dict):
        return str((obj.get("metadata") or {}).get("resourceVersion") or "")
    meta = getattr(obj, "metadata", None)
    return str(getattr(meta, "resource_version", "") or "")
