"""Checks deploy/: every file parses as YAML, and the manifests agree with each other and with the
server (the port it listens on, its grace period, its config file, its store).

Usage: deploy_manifests.py DEPLOY_DIR DEFAULT_PORT DEFAULT_GRACE_SECS CLOSE_SECS
"""

import pathlib
import sys
import tomllib

import yaml

deploy, port, default_grace, close_secs = (
    pathlib.Path(sys.argv[1]),
    int(sys.argv[2]),
    int(sys.argv[3]),
    int(sys.argv[4]),
)

objects = {}
files = sorted(deploy.glob("*.yaml")) + sorted(deploy.glob("*.yml"))
assert files, f"no manifests in {deploy}"
for path in files:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        for field in ("apiVersion", "kind", "metadata"):
            assert field in doc, f"{path.name}: a document without {field}"
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in objects, f"{key} defined twice"
        objects[key] = doc

expected = {
    ("Deployment", "toolstream"),
    ("Service", "toolstream"),
    ("ConfigMap", "toolstream-config"),
    ("Deployment", "redis"),
    ("Service", "redis"),
}
missing = expected - objects.keys()
assert not missing, f"missing from deploy/: {sorted(missing)}"


def pod_spec(name):
    deployment = objects[("Deployment", name)]
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), f"{name}: the selector does not match its pods"
    return spec, spec["template"]["spec"], labels


def flag(args, name):
    assert name in args, f"toolstream args lack {name}: {args}"
    return args[args.index(name) + 1]


def service_reaches(service_name, labels, container_port):
    service = objects[("Service", service_name)]["spec"]
    assert service["selector"].items() <= labels.items(), f"Service {service_name} selects no pod"
    for entry in service["ports"]:
        target = entry.get("targetPort", entry["port"])
        assert target in (container_port["name"], container_port["containerPort"]), (
            f"Service {service_name} port {entry} does not reach the container's {container_port}"
        )
    return service


# toolstream: three replicas on Redis, listening on the server's port on every interface.
spec, pod, labels = pod_spec("toolstream")
assert spec["replicas"] == 3, spec["replicas"]
(container,) = pod["containers"]
args = container["args"]
assert args[0] == "serve", args
listen = flag(args, "--listen")
assert listen == f"0.0.0.0:{port}", listen
store = flag(args, "--store")
assert store.startswith("redis://"), store
redis_host, redis_port = store.removeprefix("redis://").split("/")[0].split(":")
(grpc_port,) = [p for p in container["ports"] if p["containerPort"] == port]
assert grpc_port["name"] == "grpc", grpc_port

# Probes: Kubernetes' own gRPC probe on the serving port (grpc.health.v1).
for probe in ("readinessProbe", "livenessProbe"):
    assert "grpc" in container[probe], f"{probe} is not a grpc probe"
    assert container[probe]["grpc"]["port"] == port, container[probe]
    assert container[probe]["grpc"].get("service", "") in (
        "",
        "toolstream.v1.ToolService",
        "toolstream.v1.RunService",
    ), container[probe]
assert "requests" in container["resources"], "no resource requests"

# The config file comes from the ConfigMap, parses, and sets nothing the flags contradict.
config_path = pathlib.PurePosixPath(flag(args, "--config"))
mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
volume_name = mounts[str(config_path.parent)]
(volume,) = [v for v in pod["volumes"] if v["name"] == volume_name]
config_map = objects[("ConfigMap", volume["configMap"]["name"])]
config = tomllib.loads(config_map["data"][config_path.name])
grace = config.get("limits", {}).get("grace_period_secs", default_grace)
assert pod["terminationGracePeriodSeconds"] > grace + close_secs, (
    f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} does not leave the "
    f"server its grace period ({grace} s) and {close_secs} s to close connections"
)
root = config.get("root")
if root is not None:
    assert root in mounts, f"root {root} is not a mounted volume"

# The Service speaks h2c to the pods' gRPC port.
service = service_reaches("toolstream", labels, grpc_port)
assert all(p["appProtocol"] == "kubernetes.io/h2c" for p in service["ports"]), service["ports"]

# Redis: the Service the store URL names, reaching a Redis without persistence.
_, redis_pod, redis_labels = pod_spec("redis")
assert redis_host == "redis", store
(redis,) = redis_pod["containers"]
(redis_container_port,) = redis["ports"]
redis_service = service_reaches(redis_host, redis_labels, redis_container_port)
assert [p["port"] for p in redis_service["ports"]] == [int(redis_port)], redis_service["ports"]
redis_args = redis["args"]
assert redis_args[redis_args.index("--save") + 1] == "", redis_args
assert redis_args[redis_args.index("--appendonly") + 1] == "no", redis_args

# managed-redis/: a kustomize overlay of the same fleet on a managed Redis. Its resources exist,
# its patch leaves the Deployment without --store (a flag would win over the environment) and
# gives it TOOLSTREAM_STORE from the overlay's Secret, whose URL is TLS (and Redis Cluster).
overlay = deploy / "managed-redis"
kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
overlay_objects = {}
for resource in kustomization["resources"]:
    path = (overlay / resource).resolve()
    assert path.exists(), f"managed-redis: {resource} does not exist"
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is not None:
            overlay_objects[(doc["kind"], doc["metadata"]["name"])] = doc
assert ("Deployment", "redis") not in overlay_objects, "managed-redis brings its own Redis"
(patch,) = kustomization["patches"]
assert patch["target"] == {"kind": "Deployment", "name": "toolstream"}, patch["target"]
patched = overlay_objects[("Deployment", "toolstream")]["spec"]["template"]["spec"]["containers"][0]
for operation in yaml.safe_load(patch["patch"]):
    field = operation["path"].rsplit("/", 1)[1]
    assert operation["path"] == f"/spec/template/spec/containers/0/{field}", operation["path"]
    assert operation["op"] in ("replace", "add"), operation
    assert operation["op"] == "add" or field in patched, f"replace of a missing {field}"
    patched[field] = operation["value"]
assert "--store" not in patched["args"], patched["args"]
assert flag(patched["args"], "--config") == str(config_path), patched["args"]
assert flag(patched["args"], "--listen") == listen, patched["args"]
(store_env,) = [e for e in patched["env"] if e["name"] == "TOOLSTREAM_STORE"]
secret_ref = store_env["valueFrom"]["secretKeyRef"]
secret = overlay_objects[("Secret", secret_ref["name"])]
managed_store = secret["stringData"][secret_ref["key"]]
assert managed_store.startswith(("rediss://", "rediss+cluster://")), managed_store

print(
    f"deploy: {len(files)} files, {len(objects)} objects consistent; "
    f"managed-redis overlay consistent"
)
