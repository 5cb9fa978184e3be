#!/usr/bin/env python3
"""Checks deploy/ (Dockerfile, compose.yaml, k8s/) against the real server and CLI.

No Docker engine or cluster runs on the build machines, so this proves what can be proved
without one:
  * every DSINFER_* variable the files set is a real dsinfer-server flag, and its value
    parses (the server is started with those variables and must come up);
  * ports agree everywhere: DSINFER_LISTEN, EXPOSE, compose ports, containerPort, probes,
    Service targetPort;
  * the health checks are real: Kubernetes probes use native gRPC health (grpc.health.v1),
    and the image's HEALTHCHECK command (`dsinfer health --server ...`) is run against a
    live server and must succeed;
  * drain timing: Kubernetes' and compose's grace periods exceed the server's drain;
  * the image's build stage runs the same install script and CMake configure as CI.

Usage: deploy_config_test.py --source DIR --server BIN --client BIN --make-model BIN
"""
import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

import yaml

failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def server_flags(server_bin):
    out = subprocess.run([server_bin, "--helpfull"], capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    return set(re.findall(r"^\s+--([a-z0-9_]+) \(", text, re.M))


def dockerfile_env(text):
    env = {}
    for m in re.finditer(r"^ENV\s+((?:.*\\\n)*.*)$", text, re.M):
        body = m.group(1).replace("\\\n", " ")
        for tok in shlex.split(body):
            if "=" in tok:
                k, v = tok.split("=", 1)
                env[k] = v
    return env


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--make-model", required=True)
    args = ap.parse_args()
    deploy = os.path.join(args.source, "deploy")
    flags = server_flags(args.server)
    check(len(flags) > 10, f"dsinfer-server --helpfull lists its flags ({len(flags)})")

    dockerfile = open(os.path.join(deploy, "Dockerfile")).read()
    compose = yaml.safe_load(open(os.path.join(deploy, "compose.yaml")))
    k8s = {}
    for name in sorted(os.listdir(os.path.join(deploy, "k8s"))):
        for doc in yaml.safe_load_all(open(os.path.join(deploy, "k8s", name))):
            if doc and "kind" in doc:
                k8s.setdefault(doc["kind"], []).append(doc)

    # --- environment variables are real flags ---------------------------------------------
    docker_env = dockerfile_env(dockerfile)
    svc = compose["services"]["dsinfer"]
    compose_env = {k: str(v) for k, v in svc["environment"].items()}
    configmap = k8s["ConfigMap"][0]["data"]
    container = k8s["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    deploy_env = {e["name"]: str(e["value"]) for e in container.get("env", [])}
    for source, env in [("Dockerfile", docker_env), ("compose.yaml", compose_env),
                        ("k8s ConfigMap", configmap), ("k8s Deployment", deploy_env)]:
        for key in env:
            if not key.startswith("DSINFER_"):
                continue
            flag = key[len("DSINFER_"):].lower()
            check(flag in flags, f"{source}: {key} is the server flag --{flag}")

    # --- ports agree ----------------------------------------------------------------------
    port = port_of(docker_env["DSINFER_LISTEN"])
    check(re.search(rf"^EXPOSE\s+{port}\b", dockerfile, re.M) is not None, f"Dockerfile EXPOSE {port}")
    check(port_of(compose_env["DSINFER_LISTEN"]) == port, "compose DSINFER_LISTEN port")
    check(any(str(p).endswith(f":{port}") for p in svc["ports"]), "compose publishes the port")
    check(port_of(deploy_env["DSINFER_LISTEN"]) == port, "k8s DSINFER_LISTEN port")
    cports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check(cports.get("grpc") == port, "k8s containerPort grpc")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = container.get(probe, {})
        check("grpc" in p and p["grpc"]["port"] == port, f"k8s {probe} is native gRPC health on {port}")
    for s in k8s["Service"]:
        check(all(p["targetPort"] in ("grpc", port) for p in s["spec"]["ports"]),
              f"Service {s['metadata']['name']} targets the gRPC port")
    check(any(s["spec"].get("clusterIP") == "None" for s in k8s["Service"]),
          "a headless Service exists for client-side round robin (dns:///)")
    check(container["resources"]["limits"].get("nvidia.com/gpu") == 1, "k8s requests one GPU")
    check("memory" in container["resources"]["requests"], "k8s requests host memory for the KV pool")
    check("PodDisruptionBudget" in k8s, "a PodDisruptionBudget exists")

    # --- drain timing ---------------------------------------------------------------------
    grace = float(configmap.get("DSINFER_SHUTDOWN_GRACE_S", docker_env.get("DSINFER_SHUTDOWN_GRACE_S")))
    tgp = k8s["Deployment"][0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    check(tgp > grace, f"terminationGracePeriodSeconds {tgp} > server drain {grace}s")
    stop = svc.get("stop_grace_period", "10s")
    check(float(stop.rstrip("s")) > float(compose_env["DSINFER_SHUTDOWN_GRACE_S"]),
          "compose stop_grace_period exceeds the server drain")

    # --- the image build is CI's build ----------------------------------------------------
    test_sh = open(os.path.join(args.source, "scripts", "test.sh")).read()
    configure = re.search(r"^cmake -S \. -B build .*$", test_sh, re.M).group(0)
    check("deploy/install-deps.sh" in dockerfile, "Dockerfile installs deps with deploy/install-deps.sh")
    check(configure.replace("cmake -S . -B build -G Ninja", "") in dockerfile and
          "cmake -S . -B build -G Ninja" in dockerfile, "Dockerfile configures CMake as CI does")
    check(re.search(r"^USER\s+(?!root)\S+", dockerfile, re.M) is not None, "runtime user is not root")
    check(re.search(r"^FROM nvidia/cuda:\S+-runtime-", dockerfile, re.M) is not None,
          "runtime stage is NVIDIA's CUDA runtime image")

    # --- health checks work against a live server -----------------------------------------
    health = re.search(r'HEALTHCHECK.*\n?.*CMD \[(.*)\]', dockerfile).group(1)
    health_cmd = [a.strip().strip('"') for a in health.split(",")]
    check(health_cmd[:2] == ["dsinfer", "health"], "HEALTHCHECK runs `dsinfer health`")
    check(svc["healthcheck"]["test"][1:3] == ["dsinfer", "health"], "compose healthcheck runs `dsinfer health`")
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        subprocess.run([args.make_model, "--out", model, "--preset", "tiny"], check=True,
                       capture_output=True, timeout=60)
        live_port = free_port()
        env = dict(os.environ)
        env.update({k: v for k, v in configmap.items() if k.startswith("DSINFER_")})
        # The build machines have no GPU and little memory: serve the same configuration on
        # the CPU backend with a small context.
        env.update({"DSINFER_MODEL": model, "DSINFER_LISTEN": f"127.0.0.1:{live_port}",
                    "DSINFER_DEVICE": "cpu", "DSINFER_MAX_CONTEXT": "1024",
                    "DSINFER_SHUTDOWN_GRACE_S": "2"})
        server = subprocess.Popen([args.server], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            cmd = [args.client] + health_cmd[1:]
            cmd[cmd.index("127.0.0.1:50051")] = f"127.0.0.1:{live_port}"
            ok = False
            for _ in range(100):
                if server.poll() is not None:
                    break
                if subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0:
                    ok = True
                    break
                time.sleep(0.1)
            check(ok, "the HEALTHCHECK command succeeds against a server started with the ConfigMap's variables")
        finally:
            server.terminate()
            try:
                out, _ = server.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                out, _ = server.communicate()
            check(server.returncode == 0, f"server exits 0 on SIGTERM (got {server.returncode})")
            if server.returncode != 0 or not ok:
                print(out[-3000:])
        # A dead address must make the health check fail (the check can fail).
        dead = [args.client] + health_cmd[1:]
        dead[dead.index("127.0.0.1:50051")] = f"127.0.0.1:{free_port()}"
        check(subprocess.run(dead, capture_output=True, timeout=30).returncode != 0,
              "the HEALTHCHECK command fails when no server listens")

    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
