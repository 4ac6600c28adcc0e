/*
 * net.c — the guest's network: lo at boot, then, once, what the host's NET
 * asks for. "none": nothing more. "nat": the one NIC gets its address, a
 * default route and the resolver. "allow": still no NIC, but the agent's
 * own plumbing on lo: 127.0.0.2 (so that glibc sees IPv4 configured), the
 * DNS stub (dns.c), the egress listener (sock.c),
 * a route via lo for each of the policy's address ranges, and nftables
 * rules that send TCP for the synthetic range and for those ranges to the
 * listener, which reads where each connection was going from conntrack
 * (SO_ORIGINAL_DST).
 *
 * The rules go in over nfnetlink (the guest has no nft). In nft's words:
 *
 *	table ip capsule {
 *		chain output {
 *			type nat hook output priority -100; policy accept;
 *			ip daddr 127.64.0.0/10 meta l4proto tcp redirect to :1
 *			ip daddr 127.0.0.0/8 accept
 *			ip daddr NET/PREFIX meta l4proto tcp redirect to :1
 *			...one per route
 *		}
 *	}
 *
 * The accept keeps the guest's own loopback (the stub and the listener
 * among it) out of any range that covers it, 0.0.0.0/0 say: nothing
 * loops. The routes go in over rtnetlink rather than SIOCADDRT to carry
 * 127.0.0.1 as their source; without one a connection would leave from
 * 0.0.0.0.
 *
 * Fail closed: the first step that fails is NET_DONE's error, and the host
 * does not start a VM whose network is not what it asked for.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* pipe2, ptsname_r, signalfd: CMake defines it too */
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "agent.h"

#define NET_RESOLV		"/etc/resolv.conf"
#define NET_NIC_WAIT_MS		5000	/* for the NIC to appear (nat) */
#define NET_NIC_POLL_MS		20
#define NET_NL_WAIT_MS		2000	/* for the kernel's acks */
#define NET_NFT_TABLE		"capsule"
#define NET_NFT_CHAIN		"output"
#define NET_NFT_PRIO		(-100)	/* NF_IP_PRI_NAT_DST */
#define NET_NFT_RULE_MAX	512	/* bytes one rule takes, at most */
#define NET_LOOPBACK		0x7f000000u	/* 127.0.0.0/8, host order */
/* What allow mode needs from the kernel, for the message when it fails. */
#define NET_NFT_HINT	"the guest kernel needs nf_tables, nft_chain_nat " \
	"and nft_redir; they are loaded from /etc/capsule/modules-allow when " \
	"capsule.net=allow is on the kernel command line"

enum net_state {
	NET_IDLE,		/* no NET yet */
	NET_WAITING,		/* nat: for the NIC to appear */
	NET_UP,
	NET_FAILED,
};

static struct {
	enum net_state	 state;
	struct chan_net	 want;		/* the NET being or been applied */
	long		 deadline;	/* NET_WAITING until */
	uint32_t	 code;		/* NET_FAILED: said again to a new host */
	char		 msg[CHAN_MAX_MSG];
} N;

/* ---- ioctls ---- */

static int
net_ifflags_up(int fd, const char *ifname)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return -errno;
	return 0;
}

/* The kernel gives lo 127.0.0.1/8 as it comes up. */
int
net_lo_up(void)
{
	int fd, r;

	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	r = net_ifflags_up(fd, "lo");
	close(fd);
	return r;
}

static void
net_sin(struct sockaddr *sa, uint32_t addr_be)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	sin.sin_addr.s_addr = addr_be;
	memcpy(sa, &sin, sizeof(sin));
}

/*
 * allow: a second address on lo, 127.0.0.2/8 (label lo:1). glibc's
 * AI_ADDRCONFIG counts IPv4 as configured only when an address other than
 * 127.0.0.1 is, so with lo alone getaddrinfo(AF_INET, AI_ADDRCONFIG)
 * (getent ahostsv4, curl -4, wget -4) fails without asking the stub.
 */
static int
net_lo_second(char *err, size_t errlen)
{
	struct ifreq ifr;
	int fd, r = 0;

	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		r = -errno;
	if (r == 0) {
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo:1");
		net_sin(&ifr.ifr_addr, htonl(INADDR_LOOPBACK + 1));
		if (ioctl(fd, SIOCSIFADDR, &ifr) < 0 && errno != EEXIST)
			r = -errno;
		close(fd);
	}
	if (r < 0)
		snprintf(err, errlen, "cannot add 127.0.0.2 to lo: %s",
		    strerror(-r));
	return r;
}

static uint32_t
net_mask(uint8_t prefix)
{
	return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

static void
net_fmt(char *buf, size_t len, uint32_t addr_be)
{
	if (inet_ntop(AF_INET, &addr_be, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

/* Replaces whatever is there, a symlink included, with our own file. */
static int
net_resolv(uint32_t ns_be, char *err, size_t errlen)
{
	char line[64], a[INET_ADDRSTRLEN];
	int fd, n;

	net_fmt(a, sizeof(a), ns_be);
	n = snprintf(line, sizeof(line), "nameserver %s\n", a);
	if (unlink(NET_RESOLV) < 0 && errno != ENOENT)
		goto fail;
	fd = open(NET_RESOLV, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	if (fchmod(fd, 0644) < 0 || write(fd, line, (size_t)n) != n) {
		close(fd);
		goto fail;
	}
	if (close(fd) < 0)
		goto fail;
	return 0;
fail:
	n = -errno;
	snprintf(err, errlen, "cannot write %s: %s", NET_RESOLV,
	    strerror(-n));
	return n;
}

/* ---- nat ---- */

/* The NIC: the lowest-numbered interface backed by a device. */
static int
net_find_nic(char *name, size_t cap)
{
	char path[300], buf[32];
	struct dirent *d;
	struct stat st;
	long best = -1;
	DIR *dir;

	if ((dir = opendir("/sys/class/net")) == NULL)
		return -errno;
	while ((d = readdir(dir)) != NULL) {
		long idx;
		ssize_t n;
		int fd;

		if (d->d_name[0] == '.' || strcmp(d->d_name, "lo") == 0 ||
		    strlen(d->d_name) >= IFNAMSIZ)
			continue;
		snprintf(path, sizeof(path), "/sys/class/net/%s/device",
		    d->d_name);
		if (lstat(path, &st) < 0)
			continue;
		snprintf(path, sizeof(path), "/sys/class/net/%s/ifindex",
		    d->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		idx = strtol(buf, NULL, 10);
		if (best < 0 || idx < best) {
			best = idx;
			snprintf(name, cap, "%s", d->d_name);
		}
	}
	closedir(dir);
	return best < 0 ? -ENOENT : 0;
}

static int
net_nat_setup(const char *nic, char *err, size_t errlen)
{
	const struct chan_net *n = &N.want;
	struct rtentry rt;
	struct ifreq ifr;
	const char *what;
	int fd, r;

	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
		r = -errno;
		snprintf(err, errlen, "socket: %s", strerror(-r));
		return r;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", nic);
	what = "set the address of";
	net_sin(&ifr.ifr_addr, n->addr);
	if (ioctl(fd, SIOCSIFADDR, &ifr) < 0)
		goto fail;
	what = "set the netmask of";
	net_sin(&ifr.ifr_netmask, htonl(net_mask(n->prefix)));
	if (ioctl(fd, SIOCSIFNETMASK, &ifr) < 0)
		goto fail;
	what = "bring up";
	if ((r = net_ifflags_up(fd, nic)) < 0) {
		errno = -r;
		goto fail;
	}
	if (n->gateway != 0) {
		what = "add the default route on";
		memset(&rt, 0, sizeof(rt));
		net_sin(&rt.rt_dst, 0);
		net_sin(&rt.rt_genmask, 0);
		net_sin(&rt.rt_gateway, n->gateway);
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		if (ioctl(fd, SIOCADDRT, &rt) < 0 && errno != EEXIST)
			goto fail;
	}
	close(fd);
	if (n->dns != 0)
		return net_resolv(n->dns, err, errlen);
	return 0;
fail:
	r = -errno;
	snprintf(err, errlen, "cannot %s %s: %s", what, nic, strerror(-r));
	close(fd);
	return r;
}

/* ---- netlink, for routes and nftables ---- */

struct net_nl {
	uint8_t		*buf;
	size_t		 len, cap;
	uint32_t	 seq;		/* of the last message */
	uint32_t	 first;		/* of the first that asks for an ack */
	uint32_t	 nack;		/* messages that ask for one */
	int		 full;		/* something did not fit */
};

static int
net_nl_init(struct net_nl *b, size_t cap)
{
	memset(b, 0, sizeof(*b));
	if ((b->buf = malloc(cap)) == NULL)
		return -ENOMEM;
	b->cap = cap;
	return 0;
}

static void *
net_nl_put(struct net_nl *b, size_t len)
{
	size_t n = NLMSG_ALIGN(len);
	void *p;

	if (b->full || b->cap - b->len < n) {
		b->full = 1;
		return NULL;
	}
	p = b->buf + b->len;
	memset(p, 0, n);
	b->len += n;
	return p;
}

/* A message header; its family header (extra bytes) follows zeroed, for
 * the caller to fill in. Returns the offset to close it with. */
static size_t
net_nl_msg(struct net_nl *b, uint16_t type, uint16_t flags, void **extra,
    size_t extra_len)
{
	size_t off = b->len;
	struct nlmsghdr *h = net_nl_put(b, NLMSG_HDRLEN);
	void *x = net_nl_put(b, extra_len);

	*extra = x;
	if (h == NULL || x == NULL)
		return off;
	h->nlmsg_type = type;
	h->nlmsg_flags = NLM_F_REQUEST | flags;
	h->nlmsg_seq = ++b->seq;
	if (flags & NLM_F_ACK) {
		if (b->nack++ == 0)
			b->first = b->seq;
	}
	return off;
}

static void
net_nl_end(struct net_nl *b, size_t off)
{
	if (!b->full)
		((struct nlmsghdr *)(b->buf + off))->nlmsg_len =
		    (uint32_t)(b->len - off);
}

static void
net_nl_attr(struct net_nl *b, uint16_t type, const void *p, size_t len)
{
	struct nlattr *a = net_nl_put(b, NLA_HDRLEN + len);

	if (a == NULL)
		return;
	a->nla_type = type;
	a->nla_len = (uint16_t)(NLA_HDRLEN + len);
	memcpy((uint8_t *)a + NLA_HDRLEN, p, len);
}

static void
net_nl_str(struct net_nl *b, uint16_t type, const char *s)
{
	net_nl_attr(b, type, s, strlen(s) + 1);
}

static void
net_nl_u32(struct net_nl *b, uint16_t type, uint32_t v)
{
	net_nl_attr(b, type, &v, sizeof(v));
}

static void
net_nl_be32(struct net_nl *b, uint16_t type, uint32_t v)
{
	net_nl_u32(b, type, htonl(v));
}

static size_t
net_nl_nest(struct net_nl *b, uint16_t type)
{
	size_t off = b->len;
	struct nlattr *a = net_nl_put(b, NLA_HDRLEN);

	if (a != NULL)
		a->nla_type = type | NLA_F_NESTED;
	return off;
}

static void
net_nl_nest_end(struct net_nl *b, size_t off)
{
	if (!b->full)
		((struct nlattr *)(b->buf + off))->nla_len =
		    (uint16_t)(b->len - off);
}

/* Reads acks until every message that asked has one, or one says no.
 * Returns 0, or the first error with *which set to its message's index
 * (from 0, counting those that ask). `ok` is an errno that means done. */
static int
net_nl_wait(int fd, struct net_nl *b, int ok, uint32_t *which)
{
	long deadline = agent_now_ms() + NET_NL_WAIT_MS;
	uint8_t rbuf[16384] __attribute__((aligned(4)));
	uint32_t acked = 0;

	while (acked < b->nack) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = deadline - agent_now_ms();
		struct nlmsghdr *h;
		ssize_t n;
		int len;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
		if ((n = recv(fd, rbuf, sizeof(rbuf), MSG_DONTWAIT)) < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		len = (int)n;
		for (h = (struct nlmsghdr *)rbuf; NLMSG_OK(h, len);
		    h = NLMSG_NEXT(h, len)) {
			const struct nlmsgerr *e = NLMSG_DATA(h);

			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(int)))
				return -EBADMSG;
			if (e->error != 0 && -e->error != ok) {
				*which = h->nlmsg_seq - b->first;
				return e->error;
			}
			acked++;
		}
	}
	return 0;
}

/* Sends what b holds on a new netlink socket and waits for the acks. */
static int
net_nl_talk(int proto, struct net_nl *b, int ok, uint32_t *which)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd, one = 1, size = (int)b->len * 2, r;

	*which = UINT32_MAX;
	if (b->full)
		return -EMSGSIZE;
	if ((fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto)) < 0)
		return -errno;
	/* Errors then echo only the header of what they refuse. */
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	/* A batch must go in one message: room for all of it. */
	if (size > 212992 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE,
	    &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (sendto(fd, b->buf, b->len, 0, (struct sockaddr *)&sa,
	    sizeof(sa)) < 0)
		r = -errno;
	else
		r = net_nl_wait(fd, b, ok, which);
	close(fd);
	return r;
}

/* ---- allow: routes via lo ---- */

/* A route inside 127.0.0.0/8 is there already: lo owns all of it. */
static int
net_route_local(const struct chan_route *rt)
{
	return rt->prefix >= 8 && (ntohl(rt->net) >> 24) == 127;
}

static int
net_routes(const struct chan_net *n, char *err, size_t errlen)
{
	uint32_t src = htonl(INADDR_LOOPBACK), oif, which, i, k = 0;
	uint16_t idx[CHAN_NET_MAX_ROUTES];
	char a[INET_ADDRSTRLEN];
	struct net_nl b;
	int r;

	if ((oif = if_nametoindex("lo")) == 0) {
		r = -errno;
		snprintf(err, errlen, "no lo interface: %s", strerror(-r));
		return r;
	}
	if ((r = net_nl_init(&b, 128 * ((size_t)n->nroutes + 1))) < 0) {
		snprintf(err, errlen, "out of memory");
		return r;
	}
	for (i = 0; i < n->nroutes; i++) {
		const struct chan_route *rt = &n->routes[i];
		struct rtmsg *m;
		size_t off;

		if (net_route_local(rt))
			continue;
		off = net_nl_msg(&b, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_ACK,
		    (void **)&m, sizeof(*m));
		if (m != NULL) {
			m->rtm_family = AF_INET;
			m->rtm_dst_len = rt->prefix;
			m->rtm_table = RT_TABLE_MAIN;
			m->rtm_protocol = RTPROT_STATIC;
			m->rtm_scope = RT_SCOPE_LINK;
			m->rtm_type = RTN_UNICAST;
		}
		if (rt->prefix > 0)
			net_nl_attr(&b, RTA_DST, &rt->net, 4);
		net_nl_u32(&b, RTA_OIF, oif);
		net_nl_attr(&b, RTA_PREFSRC, &src, 4);
		net_nl_end(&b, off);
		idx[k++] = (uint16_t)i;
	}
	r = k == 0 ? 0 : net_nl_talk(NETLINK_ROUTE, &b, EEXIST, &which);
	free(b.buf);
	if (r < 0) {
		if (which < k) {
			net_fmt(a, sizeof(a), n->routes[idx[which]].net);
			snprintf(err, errlen, "cannot add the route to %s/%u "
			    "via lo: %s", a, n->routes[idx[which]].prefix,
			    strerror(-r));
		} else {
			snprintf(err, errlen, "cannot add the routes via lo: "
			    "%s", strerror(-r));
		}
	}
	return r;
}

/* ---- allow: nftables ---- */

static size_t
net_nft_expr(struct net_nl *b, const char *name, size_t *data)
{
	size_t e = net_nl_nest(b, NFTA_LIST_ELEM);

	net_nl_str(b, NFTA_EXPR_NAME, name);
	*data = net_nl_nest(b, NFTA_EXPR_DATA);
	return e;
}

static void
net_nft_expr_end(struct net_nl *b, size_t e, size_t data)
{
	net_nl_nest_end(b, data);
	net_nl_nest_end(b, e);
}

static void
net_nft_value(struct net_nl *b, uint16_t type, const void *p, size_t len)
{
	size_t n = net_nl_nest(b, type);

	net_nl_attr(b, NFTA_DATA_VALUE, p, len);
	net_nl_nest_end(b, n);
}

static void
net_nft_cmp_eq(struct net_nl *b, const void *p, size_t len)
{
	size_t d, e = net_nft_expr(b, "cmp", &d);

	net_nl_be32(b, NFTA_CMP_SREG, NFT_REG_1);
	net_nl_be32(b, NFTA_CMP_OP, NFT_CMP_EQ);
	net_nft_value(b, NFTA_CMP_DATA, p, len);
	net_nft_expr_end(b, e, d);
}

/* ip daddr net/prefix (nothing for /0, which every address matches) */
static void
net_nft_daddr(struct net_nl *b, uint32_t net_be, uint8_t prefix)
{
	uint32_t mask = htonl(net_mask(prefix)), zero = 0;
	size_t d, e;

	if (prefix == 0)
		return;
	e = net_nft_expr(b, "payload", &d);
	net_nl_be32(b, NFTA_PAYLOAD_DREG, NFT_REG_1);
	net_nl_be32(b, NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
	net_nl_be32(b, NFTA_PAYLOAD_OFFSET, 16);	/* iphdr.daddr */
	net_nl_be32(b, NFTA_PAYLOAD_LEN, 4);
	net_nft_expr_end(b, e, d);
	if (prefix < 32) {
		e = net_nft_expr(b, "bitwise", &d);
		net_nl_be32(b, NFTA_BITWISE_SREG, NFT_REG_1);
		net_nl_be32(b, NFTA_BITWISE_DREG, NFT_REG_1);
		net_nl_be32(b, NFTA_BITWISE_LEN, 4);
		net_nft_value(b, NFTA_BITWISE_MASK, &mask, 4);
		net_nft_value(b, NFTA_BITWISE_XOR, &zero, 4);
		net_nft_expr_end(b, e, d);
	}
	net_nft_cmp_eq(b, &net_be, 4);
}

static size_t
net_nft_rule(struct net_nl *b, size_t *exprs)
{
	struct nfgenmsg *g;
	size_t off;

	off = net_nl_msg(b, NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE,
	    NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, (void **)&g, sizeof(*g));
	if (g != NULL) {
		g->nfgen_family = NFPROTO_IPV4;
		g->version = NFNETLINK_V0;
	}
	net_nl_str(b, NFTA_RULE_TABLE, NET_NFT_TABLE);
	net_nl_str(b, NFTA_RULE_CHAIN, NET_NFT_CHAIN);
	*exprs = net_nl_nest(b, NFTA_RULE_EXPRESSIONS);
	return off;
}

static void
net_nft_rule_end(struct net_nl *b, size_t off, size_t exprs)
{
	net_nl_nest_end(b, exprs);
	net_nl_end(b, off);
}

/* ip daddr net/prefix meta l4proto tcp redirect to :AGENT_EGRESS_PORT */
static void
net_nft_redirect(struct net_nl *b, uint32_t net_be, uint8_t prefix)
{
	uint16_t port = htons(AGENT_EGRESS_PORT);
	uint8_t tcp = IPPROTO_TCP;
	size_t off, x, d, e;

	off = net_nft_rule(b, &x);
	net_nft_daddr(b, net_be, prefix);
	e = net_nft_expr(b, "meta", &d);
	net_nl_be32(b, NFTA_META_DREG, NFT_REG_1);
	net_nl_be32(b, NFTA_META_KEY, NFT_META_L4PROTO);
	net_nft_expr_end(b, e, d);
	net_nft_cmp_eq(b, &tcp, 1);
	e = net_nft_expr(b, "immediate", &d);
	net_nl_be32(b, NFTA_IMMEDIATE_DREG, NFT_REG_1);
	net_nft_value(b, NFTA_IMMEDIATE_DATA, &port, 2);
	net_nft_expr_end(b, e, d);
	e = net_nft_expr(b, "redir", &d);
	net_nl_be32(b, NFTA_REDIR_REG_PROTO_MIN, NFT_REG_1);
	net_nl_be32(b, NFTA_REDIR_REG_PROTO_MAX, NFT_REG_1);
	net_nl_be32(b, NFTA_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
	net_nft_expr_end(b, e, d);
	net_nft_rule_end(b, off, x);
}

/* ip daddr net/prefix accept */
static void
net_nft_accept(struct net_nl *b, uint32_t net_be, uint8_t prefix)
{
	size_t off, x, d, e, v, c;

	off = net_nft_rule(b, &x);
	net_nft_daddr(b, net_be, prefix);
	e = net_nft_expr(b, "immediate", &d);
	net_nl_be32(b, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
	v = net_nl_nest(b, NFTA_IMMEDIATE_DATA);
	c = net_nl_nest(b, NFTA_DATA_VERDICT);
	net_nl_be32(b, NFTA_VERDICT_CODE, NF_ACCEPT);
	net_nl_nest_end(b, c);
	net_nl_nest_end(b, v);
	net_nft_expr_end(b, e, d);
	net_nft_rule_end(b, off, x);
}

static void
net_nft_batch(struct net_nl *b, uint16_t type)
{
	struct nfgenmsg *g;
	size_t off;

	off = net_nl_msg(b, type, 0, (void **)&g, sizeof(*g));
	if (g != NULL) {
		g->nfgen_family = AF_UNSPEC;
		g->version = NFNETLINK_V0;
		g->res_id = htons(NFNL_SUBSYS_NFTABLES);
	}
	net_nl_end(b, off);
}

/* The table, its chain and every rule, in one batch: all or nothing. */
static int
net_nft(const struct chan_net *n, char *err, size_t errlen)
{
	struct nfgenmsg *g;
	struct net_nl b;
	char what[64], a[INET_ADDRSTRLEN];
	uint32_t which, i, k = 0;
	uint16_t idx[CHAN_NET_MAX_ROUTES];
	size_t off, hook;
	int r;

	r = net_nl_init(&b, 4096 + NET_NFT_RULE_MAX *
	    ((size_t)n->nroutes + 2));
	if (r < 0) {
		snprintf(err, errlen, "out of memory");
		return r;
	}
	net_nft_batch(&b, NFNL_MSG_BATCH_BEGIN);

	off = net_nl_msg(&b, NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE,
	    NLM_F_CREATE | NLM_F_ACK, (void **)&g, sizeof(*g));
	if (g != NULL) {
		g->nfgen_family = NFPROTO_IPV4;
		g->version = NFNETLINK_V0;
	}
	net_nl_str(&b, NFTA_TABLE_NAME, NET_NFT_TABLE);
	net_nl_end(&b, off);

	off = net_nl_msg(&b, NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWCHAIN,
	    NLM_F_CREATE | NLM_F_ACK, (void **)&g, sizeof(*g));
	if (g != NULL) {
		g->nfgen_family = NFPROTO_IPV4;
		g->version = NFNETLINK_V0;
	}
	net_nl_str(&b, NFTA_CHAIN_TABLE, NET_NFT_TABLE);
	net_nl_str(&b, NFTA_CHAIN_NAME, NET_NFT_CHAIN);
	hook = net_nl_nest(&b, NFTA_CHAIN_HOOK);
	net_nl_be32(&b, NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT);
	net_nl_be32(&b, NFTA_HOOK_PRIORITY, (uint32_t)NET_NFT_PRIO);
	net_nl_nest_end(&b, hook);
	net_nl_str(&b, NFTA_CHAIN_TYPE, "nat");
	net_nl_be32(&b, NFTA_CHAIN_POLICY, NF_ACCEPT);
	net_nl_end(&b, off);

	net_nft_redirect(&b, htonl(CHAN_NET_SYNTH), CHAN_NET_SYNTH_PREFIX);
	net_nft_accept(&b, htonl(NET_LOOPBACK), 8);
	for (i = 0; i < n->nroutes; i++) {
		if (net_route_local(&n->routes[i]))
			continue;
		net_nft_redirect(&b, n->routes[i].net, n->routes[i].prefix);
		idx[k++] = (uint16_t)i;
	}
	net_nft_batch(&b, NFNL_MSG_BATCH_END);

	r = net_nl_talk(NETLINK_NETFILTER, &b, 0, &which);
	free(b.buf);
	if (r == 0)
		return 0;
	if (which == 0) {
		snprintf(what, sizeof(what), "table ip " NET_NFT_TABLE);
	} else if (which == 1) {
		snprintf(what, sizeof(what), "nat chain " NET_NFT_CHAIN);
	} else if (which == 2) {
		snprintf(what, sizeof(what), "rule for the synthetic range");
	} else if (which == 3) {
		snprintf(what, sizeof(what), "rule for the guest's loopback");
	} else if (which - 4 < k) {
		net_fmt(a, sizeof(a), n->routes[idx[which - 4]].net);
		snprintf(what, sizeof(what), "rule for %s/%u", a,
		    n->routes[idx[which - 4]].prefix);
	} else {
		snprintf(what, sizeof(what), "rules");
	}
	snprintf(err, errlen, "cannot install the egress %s: %s (%s)", what,
	    strerror(-r), NET_NFT_HINT);
	return r;
}

/* ---- NET ---- */

static int
net_allow(struct chanio *c, char *err, size_t errlen)
{
	int r;

	if (!(agent_features() & CHAN_FEAT_STREAMS)) {
		snprintf(err, errlen, "allow mode needs byte streams, which "
		    "the host did not offer");
		return -EPROTONOSUPPORT;
	}
	if ((r = net_resolv(htonl(INADDR_LOOPBACK), err, errlen)) < 0 ||
	    (r = net_lo_second(err, errlen)) < 0 ||
	    (r = dns_start(err, errlen)) < 0 ||
	    (r = sock_listen(err, errlen)) < 0 ||
	    (r = net_routes(&N.want, err, errlen)) < 0 ||
	    (r = net_nft(&N.want, err, errlen)) < 0)
		return r;
	return 0;
}

static void
net_done(struct chanio *c, int r, const char *msg)
{
	N.state = r < 0 ? NET_FAILED : NET_UP;
	N.code = r < 0 ? (uint32_t)-r : 0;
	snprintf(N.msg, sizeof(N.msg), "%s", r < 0 ? msg : "");
	if (r < 0)
		agent_log("network set-up failed: %s", msg);
	chanio_send_status(c, CHAN_NET_DONE, 0, N.code, "%s", N.msg);
}

static void
net_nat_try(struct chanio *c)
{
	char nic[IFNAMSIZ], err[CHAN_MAX_MSG];
	int r;

	if (net_find_nic(nic, sizeof(nic)) < 0) {
		if (agent_now_ms() < N.deadline)
			return;
		net_done(c, -ENODEV, "no network interface appeared within "
		    "5 s (the NIC's driver, virtio_net, is loaded from "
		    "/etc/capsule/modules-nat when capsule.net=nat is on the "
		    "kernel command line)");
		return;
	}
	r = net_nat_setup(nic, err, sizeof(err));
	net_done(c, r, err);
}

static int
net_same(const struct chan_net *a, const struct chan_net *b)
{
	uint16_t i;

	if (a->mode != b->mode || a->prefix != b->prefix ||
	    a->addr != b->addr || a->gateway != b->gateway ||
	    a->dns != b->dns || a->nroutes != b->nroutes)
		return 0;
	for (i = 0; i < a->nroutes; i++)
		if (a->routes[i].net != b->routes[i].net ||
		    a->routes[i].prefix != b->routes[i].prefix)
			return 0;
	return 1;
}

static const char *
net_mode_name(unsigned mode)
{
	switch (mode) {
	case CHAN_NET_NONE:	return "none";
	case CHAN_NET_NAT:	return "nat";
	case CHAN_NET_ALLOW:	return "allow";
	}
	return "unknown";
}

/*
 * NET, once per boot. A host that connects again (capsuled restarted and
 * took the VM over) sends it again: the same network is answered at once,
 * with what the first one came to; another one cannot be had without a
 * reboot.
 */
void
net_frame(struct chanio *c, const uint8_t *p, size_t len)
{
	static struct chan_net n;	/* 2 KiB: not on the stack */
	char err[CHAN_MAX_MSG];
	int r;

	if (chan_net_decode(p, len, &n) < 0) {
		chanio_send_status(c, CHAN_NET_DONE, 0, EBADMSG,
		    "capsule-agent: malformed NET");
		return;
	}
	if (N.state != NET_IDLE) {
		if (!net_same(&n, &N.want))
			chanio_send_status(c, CHAN_NET_DONE, 0, EEXIST,
			    "the guest's network is already set up (mode %s); "
			    "it cannot change while the VM runs",
			    net_mode_name(N.want.mode));
		else if (N.state != NET_WAITING)
			chanio_send_status(c, CHAN_NET_DONE, 0, N.code, "%s",
			    N.msg);
		return;
	}
	N.want = n;
	switch (n.mode) {
	case CHAN_NET_NONE:
		net_done(c, 0, "");
		break;
	case CHAN_NET_NAT:
		if (n.addr == 0) {
			net_done(c, -EINVAL, "NET for nat mode has no address");
			break;
		}
		N.state = NET_WAITING;
		N.deadline = agent_now_ms() + NET_NIC_WAIT_MS;
		net_nat_try(c);
		break;
	case CHAN_NET_ALLOW:
		r = net_allow(c, err, sizeof(err));
		net_done(c, r, err);
		break;
	}
}

/* The NIC wait goes on from the loop, which it must not block. Returns
 * the ms until it wants to look again, or -1. */
long
net_expire(struct chanio *c, long now)
{
	if (N.state != NET_WAITING)
		return -1;
	net_nat_try(c);
	return N.state == NET_WAITING ? NET_NIC_POLL_MS : -1;
}
