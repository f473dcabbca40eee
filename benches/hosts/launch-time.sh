#!/usr/bin/env bash
# Launch-to-finish time of `hello` over ssh on HOSTS "hosts" of this machine
# (network namespaces with their own sshd, as in launcher/tests/netns_ssh.rs),
# RANKS ranks each, measured with hyperfine. Needs root, ip, sshd, hyperfine.
#
#   benches/hosts/launch-time.sh [RANKS_PER_HOST...]     (default: 4 16)
#
# Everything it creates (namespaces, links, sshd, keys) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
HOSTS=${HOSTS:-3}
NET=198.18.200
DIR=$(mktemp -d /tmp/mprun-launch-XXXXXX)
BR=mprlbr
cleanup() {
    for pidfile in "$DIR"/sshd*.pid; do [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true; done
    for i in $(seq 1 "$HOSTS"); do
        for pid in $(ip netns pids "mprl$i" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "mprl$i" 2>/dev/null || true
        ip link del "mprlv$i" 2>/dev/null || true
    done
    ip link del "$BR" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N '' -f "$DIR/key"
ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_key"
cp "$DIR/key.pub" "$DIR/authorized_keys"
mkdir -p /run/sshd
ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
: > "$DIR/hosts"
for i in $(seq 1 "$HOSTS"); do
    ns=mprl$i addr=$NET.$((10 + i))
    ip netns add "$ns"
    ip link add "mprlv$i" type veth peer name eth0 netns "$ns"
    ip link set "mprlv$i" master "$BR" up
    ip netns exec "$ns" ip addr add "$addr/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    cat > "$DIR/sshd$i.conf" <<CONF
ListenAddress $addr
HostKey $DIR/host_key
AuthorizedKeysFile $DIR/authorized_keys
PidFile $DIR/sshd$i.pid
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
MaxStartups 100:30:200
CONF
    ip netns exec "$ns" /usr/sbin/sshd -f "$DIR/sshd$i.conf"
    echo "$addr" >> "$DIR/hosts"
done
AGENT="ssh -i $DIR/key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
commands=()
for per_host in "${@:-4 16}"; do
    for n in $per_host; do
        sed "s/\$/ slots=$n/" "$DIR/hosts" > "$DIR/hosts$n"
        commands+=("target/release/mprun --launch-agent '$AGENT' --hostfile $DIR/hosts$n target/release/hello")
    done
done
# Floors: three ssh connections in parallel doing nothing, and the local fast path.
commands+=("sh -c 'for h in \$(cat $DIR/hosts); do $AGENT \$h true & done; wait'")
commands+=("target/release/mprun -n 12 target/release/hello")
hyperfine --warmup 2 --runs "${RUNS:-20}" --output=null -N "${commands[@]}" 2>&1 | grep -v '^ *$'
