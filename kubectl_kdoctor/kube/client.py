"""Loading a client the way kubectl would: ``--kubeconfig`` (or ``$KUBECONFIG``, merged),
``--context``, ``--cluster``, ``--user``, ``--as``/``--as-group`` impersonation,
``--request-timeout``, and in-cluster configuration inside agent pods."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubectl_kdoctor.errors import ClusterError, InputError
from kubectl_kdoctor.task import Access

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class Kube:
    """An API client plus the namespace and timeout every call uses."""

    def __init__(self, api_client: Any, namespace: str, request_timeout: float | None) -> None:
        self.api = api_client
        self.namespace = namespace
        self.timeout = request_timeout

    def kw(self) -> dict[str, Any]:
        """Keyword arguments for a client call (the request timeout)."""
        return {"_request_timeout": self.timeout} if self.timeout else {}

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api)

    @property
    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    @property
    def networking(self) -> Any:
        from kubernetes import client

        return client.NetworkingV1Api(self.api)

    @property
    def rbac(self) -> Any:
        from kubernetes import client

        return client.RbacAuthorizationV1Api(self.api)

    @property
    def authz(self) -> Any:
        from kubernetes import client

        return client.AuthorizationV1Api(self.api)

    @property
    def apiext(self) -> Any:
        from kubernetes import client

        return client.ApiextensionsV1Api(self.api)

    @property
    def apireg(self) -> Any:
        from kubernetes import client

        return client.ApiregistrationV1Api(self.api)

    @property
    def discovery(self) -> Any:
        from kubernetes import client

        return client.DiscoveryV1Api(self.api)


MAX_KUBECONFIG_BYTES = 16 * 1024 * 1024


def _kubeconfig_files(access: Access) -> tuple[str, list[str]]:
    """The kubeconfig files to merge, as kubectl picks them: ``--kubeconfig`` (one file, which
    must exist), else every existing file of ``$KUBECONFIG`` (missing ones are skipped, as
    kubectl does), else ``~/.kube/config``. A path that is there but is not a regular file
    (a directory, a FIFO, a device) is refused in one line naming where it came from."""
    from kubectl_kdoctor.validate import regular_file

    if access.kubeconfig is not None:
        return access.kubeconfig, [regular_file(access.kubeconfig, "--kubeconfig")]
    env = os.environ.get("KUBECONFIG")
    if env:
        files = []
        for p in env.split(os.pathsep):
            # missing (or dangling) entries are skipped, as kubectl does
            if p and os.path.exists(p):
                files.append(regular_file(p, "KUBECONFIG"))
        return env, files
    default = Path.home() / ".kube" / "config"
    if not default.exists():
        return str(default), []
    if not default.is_file():
        raise ClusterError(f"cannot load the kubeconfig: {default} is not a regular file")
    return str(default), [str(default)]


def _check_kubeconfig(path: str) -> bool:
    """Read one kubeconfig file the way the client will and refuse, in one line, what would
    crash it: not UTF-8, not YAML, not a mapping, lists of the wrong shape. False: empty."""
    import yaml

    def bad(why: str) -> ClusterError:
        return ClusterError(f"cannot load the kubeconfig {path}: {why}")

    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_KUBECONFIG_BYTES + 1)
    except OSError as exc:
        raise bad(exc.strerror or str(exc)) from None
    if len(data) > MAX_KUBECONFIG_BYTES:
        raise bad(f"larger than {MAX_KUBECONFIG_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise bad(f"not valid YAML{where}") from None
    except RecursionError:
        raise bad("nested too deeply") from None
    if doc is None:
        return False
    if not isinstance(doc, dict):
        raise bad(f"must be a mapping (kind: Config), got a {type(doc).__name__}")
    current = doc.get("current-context")
    if current is not None and not isinstance(current, str):
        raise bad("current-context must be a string")
    for section, inner in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
        items = doc.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            raise bad(f"{section} must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise bad(f"{section}[{i}] must be a mapping with a name")
            body = item.get(inner)
            if body is not None and not isinstance(body, dict):
                raise bad(f"{section}[{i}].{inner} must be a mapping")
    return True


def connect(access: Access) -> Kube:
    """A ``Kube`` for these access flags; ClusterError when no configuration can be loaded."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    namespace = access.namespace
    cfg = client.Configuration()
    paths, files = _kubeconfig_files(access)
    files = [f for f in files if _check_kubeconfig(f)]
    try:
        if files:
            merger = config.kube_config.KubeConfigMerger(os.pathsep.join(files))
            cfg_dict = merger.config
            contexts = {c["name"]: c for c in (cfg_dict.value.get("contexts") or [])}
            ctx_name = access.context or cfg_dict.value.get("current-context")
            if access.context and access.context not in contexts:
                raise InputError(
                    f"context {access.context!r} not found in the kubeconfig", "--context"
                )
            if not ctx_name or ctx_name not in contexts:
                raise ClusterError("the kubeconfig has no current context; give --context")
            node = contexts[ctx_name]["context"]
            ctx = node.value if hasattr(node, "value") else node  # the raw dict, mutable
            if ctx is None:
                raise ClusterError(f"cannot load the kubeconfig: context {ctx_name!r} is empty")
            for flag, wanted, section in (
                ("--cluster", access.cluster, "clusters"),
                ("--user", access.user, "users"),
            ):
                known = {c["name"] for c in (cfg_dict.value.get(section) or [])}
                if wanted and wanted not in known:
                    raise InputError(f"{wanted!r} not found in the kubeconfig's {section}", flag)
            if access.cluster:
                ctx["cluster"] = access.cluster
            if access.user:
                ctx["user"] = access.user
            loader = config.kube_config.KubeConfigLoader(
                config_dict=cfg_dict, active_context=ctx_name, config_base_path=None
            )
            loader.load_and_set(cfg)
            namespace = namespace or ctx.get("namespace") or "default"
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.incluster_config.InClusterConfigLoader(
                token_filename=str(SA_DIR / "token"), cert_filename=str(SA_DIR / "ca.crt")
            ).load_and_set(cfg)
            ns_file = SA_DIR / "namespace"
            namespace = namespace or (
                ns_file.read_text().strip() if ns_file.is_file() else "default"
            )
        else:
            raise ClusterError(
                f"no kubeconfig found ({paths}) and not running in a cluster; give --kubeconfig"
            )
    except ConfigException as exc:
        raise ClusterError(f"cannot load the kubeconfig: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        # what the client library trips on in a kubeconfig of the right shape but wrong
        # content (base64 that is not, a field of the wrong type, an unreadable cert file)
        raise ClusterError(
            f"cannot load the kubeconfig: {type(exc).__name__}: {exc} (run with -v for details)"
        ) from exc
    if not isinstance(namespace, str) or not namespace:
        raise ClusterError("cannot load the kubeconfig: the context's namespace is not a string")
    api = client.ApiClient(cfg)
    if access.as_groups and not access.as_user:
        raise InputError("needs --as (a user to impersonate)", "--as-group")
    if len(access.as_groups) > 1:
        raise InputError("give at most one --as-group (the client sends one header)", "--as-group")
    if access.as_user:
        api.set_default_header("Impersonate-User", access.as_user)
        if access.as_groups:
            api.set_default_header("Impersonate-Group", access.as_groups[0])
    return Kube(api, namespace or "default", access.request_timeout)


API_FALLBACK_ENV = "KDOCTOR_API_ENDPOINTS"
AGENT_REQUEST_TIMEOUT = 15.0  # seconds: an agent's API call never hangs on a dead address  # host:port of the apiserver's own endpoints


def connect_agent(namespace: str | None, probe_timeout: float = 3.0) -> Kube:
    """In-cluster config for an agent, robust to a broken service proxy on its node.

    The usual address is the ``kubernetes`` Service's ClusterIP, which the node's service
    proxy translates; when that proxy is down (one of the faults netreach must report), the
    agent talks to the apiserver endpoints the CLI found (``$KDOCTOR_API_ENDPOINTS``) directly,
    still verifying the certificate against the cluster CA for ``kubernetes.default.svc``.
    """
    import copy

    from kubernetes import client

    base = connect(Access(namespace=namespace))
    cfg0 = copy.copy(base.api.configuration)
    cfg0.retries = 1  # a dead address must fail fast: the caller retries, and falls back
    kube = Kube(client.ApiClient(cfg0), base.namespace, AGENT_REQUEST_TIMEOUT)
    errors: list[str] = []

    def answers(k: Kube) -> bool:
        try:
            client.VersionApi(k.api).get_code(_request_timeout=(probe_timeout, probe_timeout))
            return True
        except Exception as exc:  # any failure: try the next address
            errors.append(f"{k.api.configuration.host}: {type(exc).__name__}")
            return False

    if answers(kube):
        return kube
    for hostport in filter(None, os.environ.get(API_FALLBACK_ENV, "").split(",")):
        cfg = copy.copy(kube.api.configuration)
        _pin_host(cfg, f"https://{hostport}", "kubernetes.default.svc")
        candidate = Kube(client.ApiClient(cfg), kube.namespace, AGENT_REQUEST_TIMEOUT)
        if answers(candidate):
            return candidate
    raise ClusterError(f"cannot reach the API server: {'; '.join(errors)}")


def _pin_host(cfg: Any, host: str, server_name: str) -> None:
    """Point ``cfg`` at ``host``, and keep it there: the in-cluster loader's token refresh hook
    re-sets the host to the Service address, and itself as the hook, before requests."""
    refresh = cfg.refresh_api_key_hook

    def hook(c: Any) -> None:
        if refresh is not None:
            refresh(c)  # re-reads the token, and re-installs itself and the Service host
        c.refresh_api_key_hook = hook
        c.host = host
        c.tls_server_name = server_name

    cfg.refresh_api_key_hook = hook
    cfg.host = host
    cfg.tls_server_name = server_name
