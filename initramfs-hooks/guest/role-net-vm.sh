# net-vm: the passed-through NIC (pcifront + e1000) is its uplink; it serves the other
# domains' vifs (netback + `xl devd`, which runs /etc/xen/scripts/vif-route-sh for each
# vif) and routes between them and the uplink: no bridge, a /32 per guest, proxy ARP
# (seed 000, the Qubes sys-net pattern). Ready once it can serve vifs.
#
# Kernel command line (the unit's `extra`): uplink=<address/prefix> and
# uplink_gateway=<address>, the uplink's static address and default route.
modprobe xen-pcifront || G "modprobe xen-pcifront failed"
for _ in $(seq 1 20); do [ -e /sys/class/net/eth0 ] && break; modprobe e1000; sleep 0.5; done
R nic "$(ls /sys/bus/pci/devices | tr '\n' ' ')$(cat /sys/class/net/eth0/address 2>/dev/null)"
uplink=$(cmdline_value uplink) || G "no uplink=<address/prefix> on the kernel command line"
gateway=$(cmdline_value uplink_gateway) || G "no uplink_gateway=<address> on the command line"
ip link set eth0 up
ip addr add "$uplink" dev eth0
ip route add default via "$gateway" dev eth0
# Forward, and answer ARP on the uplink for the guests' addresses (their /32 routes point
# at their vifs): the uplink's network reaches each guest through net-vm, at layer 3.
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > /proc/sys/net/ipv4/conf/eth0/proxy_arp
# answer at once: the default proxy_delay (up to 0.8 s) outlasts the 1 s a QEMU user
# network waits for an ARP reply before it drops the packet that needed it
echo 0 > /proc/sys/net/ipv4/neigh/eth0/proxy_delay
modprobe xen-netback || G "modprobe xen-netback failed"
xl devd -p /run/xl-devd.pid > /tmp/devd.log 2>&1
R devd "exit $?"
R ready 1

# netstate N: what the lab report asks for (`lab/ask` = N, written by dom0): routes, links,
# bridges, forwarding counters; answered under data/netstate-N-*.
netstate() {
	R "netstate-$1-routes" "$(ip -4 route show | sed 's/ *$//' | tr '\n' ';')"
	R "netstate-$1-links" "$(ls /sys/class/net | tr '\n' ' ')"
	R "netstate-$1-bridges" "$(for l in /sys/class/net/*; do
		[ -d "$l/bridge" ] && basename "$l"; done | tr '\n' ' ')"
	R "netstate-$1-proxy_arp" "$(for l in /sys/class/net/*; do n=${l##*/}
		echo "$n=$(cat "/proc/sys/net/ipv4/conf/$n/proxy_arp")"; done | tr '\n' ' ')"
	R "netstate-$1-ip_forward" "$(cat /proc/sys/net/ipv4/ip_forward)"
	R "netstate-$1-modules" "$(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
	R "netstate-$1-forwarded" "$(awk '/^Ip:/ { if (!h) { for (i = 1; i <= NF; i++)
		if ($i == "ForwDatagrams") c = i; h = 1 } else print $c }' /proc/net/snmp)"
	R "netstate-$1" "done"
}
(
	last=
	xenstore-watch "/local/domain/$DOMID/lab/ask" | while read -r _; do
		n=$(xenstore-read "/local/domain/$DOMID/lab/ask" 2> /dev/null) || continue
		[ "$n" = "$last" ] && continue
		last=$n
		netstate "$n"
	done
) &

# net-vm is the third domain for sa-vm and workload-vm: it must be refused everywhere.
(
	wait_until 120 xenstore-read "/local/domain/$DOMID/lab/targets" || exit 0
	# shellcheck disable=SC2046 # two words: the domids of sa-vm and workload-vm
	set -- $(xenstore-read "/local/domain/$DOMID/lab/targets")
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
	probe probe_read_peers_sa xenstore-read "/local/domain/$S/ipc/serve"
	probe probe_read_peers_workload xenstore-read "/local/domain/$W/ipc/connect"
	R probe_done 1
) &
