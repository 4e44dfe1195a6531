# net-vm: the passed-through NIC (pcifront + e1000) and the vif backend for the others
# (netback, a bridge, `xl devd`). Ready once it can serve vifs.
modprobe xen-pcifront || G "modprobe xen-pcifront failed"
for i in $(seq 1 20); do [ -e /sys/class/net/eth0 ] && break; modprobe e1000; sleep 0.5; done
R nic "$(ls /sys/bus/pci/devices | tr '\n' ' ')$(cat /sys/class/net/eth0/address 2>/dev/null)"
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
for m in xen-netback bridge; do modprobe "$m" || G "modprobe $m failed"; done
ip link add xenbr0 type bridge
ip addr add 10.0.5.1/24 dev xenbr0
ip link set xenbr0 up
xl devd -p /run/xl-devd.pid > /tmp/devd.log 2>&1
R devd "exit $?"
R ready 1
# net-vm is the third domain for sa-vm and workload-vm: it must be refused everywhere.
(
	for i in $(seq 1 600); do
		t=$(xenstore-read "/local/domain/$DOMID/lab/targets" 2>/dev/null) && break
		sleep 0.2
	done
	set -- $t
	S=$1 W=$2
	node=/local/domain/$S/ipc/direct/$W
	probe() { # probe KEY CMD...
		k=$1; shift
		if "$@" > /tmp/probe.out 2>&1; then R "$k" "ALLOWED: $(cat /tmp/probe.out)"
		else R "$k" "denied: $(tr '\n' ' ' < /tmp/probe.out)"; fi
	}
	probe probe_read_rendezvous xenstore-read "$node"
	probe probe_write_rendezvous xenstore-write "$node/from-net-vm" x
	probe probe_read_map_sa xenstore-read /ipc/domain-map/sa-vm
	probe probe_read_map_workload xenstore-read /ipc/domain-map/workload-vm
	probe probe_write_map xenstore-write /ipc/domain-map/sa-vm 99
	R probe_done 1
) &
