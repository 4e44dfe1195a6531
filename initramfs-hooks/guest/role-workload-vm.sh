# workload-vm: its network through net-vm, on whatever vif it has whenever it gets it (at
# boot, attached after boot, or re-attached after net-vm restarted: each new interface is
# configured the moment the kernel announces it), and a vchan client of each domain dom0
# says it connects to (`ipc/connect` in its own home, published by dom0).
#
# mdev as a daemon listens to the kernel's netlink uevents; /etc/mdev.conf runs
# /etc/netfront-hotplug for every network interface that comes or goes (and makes no
# device nodes: /dev stays as init made it). Started before xen-netfront loads, so the
# first vif is announced to it too; one already there is configured here as well.
mdev -d || G "mdev -d failed: new interfaces will not be configured"
modprobe xen-netfront || G "modprobe xen-netfront failed"
for netdev in /sys/class/net/eth*; do
	[ -e "$netdev" ] && ACTION=add MDEV=${netdev##*/} /etc/netfront-hotplug
done
if connect=$(peers connect); then
	R peers "connect=[$connect]"
	for name in $connect; do
		follow_peer "$name" /etc/vchan-echo-client &
	done
fi
