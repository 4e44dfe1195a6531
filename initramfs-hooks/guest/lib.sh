# Sourced by the lab guests' init, roles and helpers (/etc/guest-lib.sh): how a guest
# reports, reads its kernel command line and learns its peers. Plain sh (busybox ash).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
ROLE=$(cat /etc/role)

# G TEXT: one line on the guest's console (xenconsoled keeps it in dom0's
# /var/log/xen/console/guest-<name>.log, where the lab report reads it)
G() { echo "@@GUEST $ROLE $(cut -d' ' -f1 /proc/uptime) $*" > /dev/console; }
# R KEY WORDS...: a result in the guest's own data/ (guest-writable; dom0's lab report
# reads it), the words joined by spaces
R() {
	_r_key=$1; shift
	xenstore-write "data/$_r_key" "$*"
	G "$_r_key=$*"
}

# cmdline_value NAME: the value of NAME=... on the kernel command line (the unit's `extra`)
cmdline_value() {
	for word in $(cat /proc/cmdline); do
		case $word in "$1="*) echo "${word#*=}"; return 0 ;; esac
	done
	return 1
}

# wait_until SECONDS CMD...: run CMD every 0.2 s until it succeeds; 1 at the deadline
wait_until() {
	tries=$(($1 * 5)); shift
	while ! "$@" > /dev/null 2>&1; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.2
	done
}

# peers serve|connect: the names dom0 published for this domain (`ipc/serve`,
# `ipc/connect` in its own home, readable by it alone; possibly empty). A domain xl
# restarted runs before dom0's follower has published them again: wait, bounded.
peers() {
	wait_until 120 xenstore-exists "ipc/$1" || { G "no ipc/$1 from dom0 in 120 s"; return 1; }
	xenstore-read "ipc/$1"
}

# domid_of NAME: a peer's current domid from dom0's map (/ipc/domain-map/<name>)
domid_of() { xenstore-read "/ipc/domain-map/$1" 2>/dev/null; }

# follow_peer NAME WORKER: run `WORKER NAME DOMID` in its own session for the peer's
# current domid, and again whenever dom0's map entry names another domid (the peer was
# restarted by xl, or came back after a reboot); the previous worker's session is ended
# first. Event-driven: a xenstore watch fires once when set and then on every change of
# the entry (docs/misc/xenstore.txt); nothing wakes while the peer keeps its domid.
follow_peer() {
	name=$1 worker=$2 current='' session=''
	xenstore-watch "/ipc/domain-map/$name" | while read -r _; do
		domid=$(domid_of "$name") || continue
		[ "$domid" = "$current" ] && continue
		[ -n "$session" ] && kill -TERM "-$session" 2> /dev/null
		G "peer $name is domid $domid${current:+ (was $current)}"
		current=$domid
		setsid "$worker" "$name" "$domid" &
		session=$!
	done
	G "the watch on /ipc/domain-map/$name ended"
}
