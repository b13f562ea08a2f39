#!/usr/bin/env bash
# Build the project's Dockerfile for real and run it, on a machine with no image registry and no GPU.
#
# 1. Start a private dockerd (root; Debian's docker.io), undone on exit: dockerd stopped by its
#    PID, docker0 removed, its iptables chains removed, ip_forward and the FORWARD policy restored.
# 2. Make a local base image instead of the CUDA one: Debian 12 (Python 3.11) by debootstrap,
#    with the host's extra CA certificates (this network intercepts TLS), cached as a tarball.
# 3. docker build --build-arg BASE_IMAGE=local/base:bookworm (the same Dockerfile users build).
# 4. In the image: the fast tests (pip freeze against the lock included), then the smoke spec with
#    results/ and runs/ mounted from the host as the invoking user; check the files on the host.
#
# Usage: scripts/ci-docker.sh   (make docker-ci). Work folder: $DPREPRO_DOCKER_WORK (default
# /tmp/dprepro-docker; the base tarball is kept there between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${DPREPRO_DOCKER_WORK:-/tmp/dprepro-docker}
BASE=local/base:bookworm
IMAGE=dprepro:ci
mkdir -p "$W"
log() { printf '== docker-ci: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "docker-ci: must run as root (it starts its own dockerd)"; exit 2; }
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing docker.io and debootstrap (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi

# --- the private engine, and everything it changes on the host, undone on exit ---
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
policy_before=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')
cleanup() {
  set +e
  if [ -f "$W/dockerd.pid" ]; then
    pid=$(cat "$W/dockerd.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$W/dockerd.pid"
  fi
  ip link delete docker0 2>/dev/null
  for table in filter nat; do
    iptables -t "$table" -S 2>/dev/null | awk '$1 == "-A" && $0 ~ /DOCKER|docker0/' | sed 's/^-A/-D/' |
      while read -r rule; do eval iptables -t "$table" "$rule" 2>/dev/null; done
    for chain in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER; do
      iptables -t "$table" -F "$chain" 2>/dev/null; iptables -t "$table" -X "$chain" 2>/dev/null
    done
  done
  echo "$forward_before" > /proc/sys/net/ipv4/ip_forward
  [ -n "$policy_before" ] && iptables -P FORWARD "$policy_before"
  log "dockerd stopped, host network restored (ip_forward $forward_before, FORWARD ${policy_before:-unchanged})"
}
trap cleanup EXIT INT TERM

log "starting dockerd"
dockerd -H "unix://$W/docker.sock" --data-root "$W/data" --exec-root "$W/exec" \
  --pidfile "$W/dockerd.pid" > "$W/dockerd.log" 2>&1 &
export DOCKER_HOST="unix://$W/docker.sock"
for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
docker info >/dev/null || { tail -20 "$W/dockerd.log"; exit 1; }

# --- the local base image (instead of the CUDA base no registry here can serve) ---
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if [ ! -s "$W/base-bookworm.tar" ]; then
    log "debootstrap Debian 12 (about a minute)"
    root="$W/rootfs"
    rm -rf "$root"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,make \
      bookworm "$root" http://deb.debian.org/debian > "$W/debootstrap.log" 2>&1 || { tail -20 "$W/debootstrap.log"; exit 1; }
    rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
      chroot "$root" update-ca-certificates >/dev/null
    fi
    tar -C "$root" -cf "$W/base-bookworm.tar.tmp" . && mv "$W/base-bookworm.tar.tmp" "$W/base-bookworm.tar"
    rm -rf "$root"
  fi
  log "importing the base image"
  bundle=/etc/ssl/certs/ca-certificates.crt
  docker import --change "ENV PIP_CERT=$bundle" --change "ENV REQUESTS_CA_BUNDLE=$bundle" \
    --change "ENV SSL_CERT_FILE=$bundle" "$W/base-bookworm.tar" "$BASE" >/dev/null
fi

# --- the project's Dockerfile, as users build it, on the local base ---
log "docker build"
start=$(date +%s)
docker build --build-arg BASE_IMAGE="$BASE" --build-arg GIT_COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" . > "$W/build.log" 2>&1 || { tail -40 "$W/build.log"; exit 1; }
log "built $IMAGE in $(( $(date +%s) - start )) s"

log "tests inside the image (fast part)"
docker run --rm "$IMAGE" test-container

log "smoke spec inside the image, results/ and runs/ mounted from the host"
out="$W/host"
rm -rf "$out" && mkdir -p "$out/results" "$out/runs"
chown -R "${SUDO_UID:-$(id -u)}:${SUDO_GID:-$(id -g)}" "$out"
docker run --rm --user "${SUDO_UID:-$(id -u)}:${SUDO_GID:-$(id -g)}" \
  -v "$out/results:/opt/dprepro/results" -v "$out/runs:/opt/dprepro/runs" \
  "$IMAGE" run EXP=smoke OUT=results
result="$out/results/smoke/v1/result.json"
[ -s "$result" ] || { echo "docker-ci: $result did not appear on the host"; exit 1; }
ls "$out/runs/smoke/v1/seed-0/"events.out.tfevents.* >/dev/null
python3 - "$result" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["name"] == "smoke" and r["seeds"][0]["steps"] == 10, r["seeds"]
assert r["environment"]["devices"]["gpus"] == [], r["environment"]["devices"]
assert r["git"]["commit"], r["git"]
print(f"docker-ci: smoke result on the host: test accuracy {r['test_accuracy']['mean']:.4f}, "
      f"commit {r['git']['commit'][:12]}, devices {r['environment']['devices']}")
EOF
log "the image as Ray nodes: a head (no CPUs for tasks) and a worker, a sweep submitted to the head"
ray_bin=/opt/dprepro/.venv/bin/ray
head=$(docker run -d --shm-size=1g --entrypoint "$ray_bin" "$IMAGE" start --head --block --port 6379 \
  --num-cpus 0 --include-dashboard=false --disable-usage-stats)
head_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$head")
worker=$(docker run -d --shm-size=1g --entrypoint "$ray_bin" "$IMAGE" start --address "$head_ip:6379" --block \
  --num-cpus 2 --disable-usage-stats)
cleanup_ray() { docker rm -f "$head" "$worker" >/dev/null 2>&1 || true; }
for i in $(seq 60); do
  docker exec "$head" "$ray_bin" status 2>/dev/null | grep -q "2.0 CPU" && break; sleep 2
done
docker exec "$head" /opt/dprepro/.venv/bin/dprepro sweep experiments/sweeps/smoke.yaml --address auto \
  --out /tmp/sweep --logdir /tmp/sweep/logs || { docker logs "$worker" | tail -20; cleanup_ray; exit 1; }
docker exec -i "$head" /opt/dprepro/.venv/bin/python - <<'EOF' || { cleanup_ray; exit 1; }
import glob, json, socket
cells = json.load(open("/tmp/sweep/sweeps/smoke-sweep/v1/frontier.json"))["cells"]
assert sorted(c["cell"] for c in cells) == ["smoke-sweep-sigma1.3", "smoke-sweep-sigma2.0"], cells
results = sorted(glob.glob("/tmp/sweep/sweeps/smoke-sweep/v1/*/v1/result.json"))
hosts = {s["worker"]["host"] for r in results for s in json.load(open(r))["seeds"]}
assert len(results) == 2 and socket.gethostname() not in hosts, (results, hosts)
print(f"docker-ci: sweep on the image cluster: {len(results)} cell results, trained on worker {sorted(hosts)}, "
      f"submitted on head {socket.gethostname()}")
EOF
cleanup_ray

log "PASSED"
