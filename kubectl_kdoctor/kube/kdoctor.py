"""Is a kdoctor controller installed and answering? (``--mode auto`` and ``version``)."""

from __future__ import annotations

from kubectl_kdoctor.errors import ClusterError, Forbidden, NotFound
from kubectl_kdoctor.kube.client import Kube
from kubectl_kdoctor.kube.errors import api_errors

CRDS = ("netreaches.kdoctor.io", "apphttphealthies.kdoctor.io", "netdnses.kdoctor.io")
APISERVICE = "v1beta1.system.kdoctor.io"


def server_version(kube: Kube) -> str:
    from kubernetes import client

    with api_errors("server version"):
        return str(client.VersionApi(kube.api).get_code(**kube.kw()).git_version)


def controller_status(kube: Kube) -> tuple[bool, str]:
    """(found, why): found when the three CRDs exist and the report APIService is Available."""
    missing = []
    for crd in CRDS:
        try:
            with api_errors():
                kube.apiext.read_custom_resource_definition(crd, **kube.kw())
        except NotFound:
            missing.append(crd)
        except Forbidden:
            return (
                False,
                "cannot read CustomResourceDefinitions (forbidden); assuming no controller",
            )
    if missing:
        return False, f"CRD {missing[0]} is not installed"
    try:
        with api_errors():
            svc = kube.apireg.read_api_service(APISERVICE, **kube.kw())
    except NotFound:
        return False, f"the CRDs exist but APIService {APISERVICE} does not (no controller)"
    except ClusterError as exc:
        return False, f"cannot read APIService {APISERVICE}: {exc}"
    for cond in (svc.status.conditions if svc.status else None) or []:
        if cond.type == "Available":
            if cond.status == "True":
                return True, f"CRDs installed and APIService {APISERVICE} is Available"
            return False, f"APIService {APISERVICE} is not Available: {cond.reason}: {cond.message}"
    return False, f"APIService {APISERVICE} reports no Available condition"
