/*
 * chan.h — the binary channel between capsuled and capsule-agent.
 *
 * One virtio-serial port carries every stream of a VM. Each frame is a
 * 12-byte little-endian header followed by `len` payload bytes:
 *
 *	u16 magic (CHAN_MAGIC)   u8 kind   u8 flags (0)
 *	u32 stream               u32 len
 *
 * Stream 0 is the control stream (HELLO, SHUTDOWN, ERROR, PING, PONG, NET).
 * Every other stream is opened by one side and numbered by it, never
 * reused within one connection: the host numbers its streams from 1 with
 * CHAN_STREAM_GUEST clear, the agent its own with CHAN_STREAM_GUEST set.
 *
 * Handshake: once the port is connected the agent sends HELLO (its
 * version, when the guest became ready, its feature bits) and the host
 * answers with its own HELLO. Each side then uses only the features both
 * named; a peer of version CHAN_VERSION_MIN (before feature bits) has
 * none. A second HELLO from the agent on one connection means the guest
 * started over (a reboot the hypervisor did not stop, a restarted agent).
 *
 * Heartbeat: once ready, the host sends PING (a u32 sequence number) now
 * and then, and the agent answers each with a PONG carrying the same
 * number. A guest that says nothing at all for a while is not answering.
 *
 * Streams (CHAN_FEAT_STREAMS). Besides the exec-shaped streams the host
 * opens with EXEC, COPY_IN and COPY_OUT (below), either side opens a
 * stream with OPEN: a type and a body for that type. The other side
 * answers OPENED (the stream is up) or RESET (refused, with an errno value
 * and why). A byte stream then carries DATA both ways, each way ended by
 * EOF (a half-close); it is over once both ways have ended, or at once
 * when either side sends RESET, after which neither sends more for it. A
 * frame of a kind the receiver does not know, on a stream other than 0,
 * is answered with RESET for that stream (EPROTONOSUPPORT), never by
 * ending the channel; an OPEN of an unknown type likewise. RESET from the
 * host on an exec stream ends it as CLOSE does (the command is killed).
 *
 * Flow control is per stream and per direction, for every data kind: a
 * sender may have at most CHAN_WINDOW data bytes (STDIN, STDOUT+STDERR,
 * or DATA) that the receiver has not handed back with a CREDIT frame. The
 * receiver grants credit only once the bytes have left it (written to the
 * pipe, the socket, ...), so a stalled reader stalls only its own stream
 * and nobody buffers more than a window per stream.
 *
 * Refresh (CHAN_FEAT_REFRESH): a guest restored from a template (or the
 * one a template was just taken from) is a copy of another; before
 * anything else the host sends REFRESH with the time and a random seed.
 * The agent sets the clock, mixes the seed in and reseeds the kernel's
 * random generator, forgets the connection it thought it had and sends
 * HELLO again, which the host then answers as after a first boot (minus
 * NET: the guest's network is set up already). With CHAN_FEAT_HOSTNAME
 * REFRESH also names the copy (its hostname); a guest that boots learns
 * its name from capsule.hostname= on the kernel command line.
 *
 * Network (CHAN_FEAT_NET): right after the handshake the host sends NET
 * with the VM's network mode; the agent sets the guest up and answers
 * NET_DONE (0, or an errno value and why). The host does not call the VM
 * ready before a successful NET_DONE. NET comes once per guest boot: a
 * capsuled that takes a running VM over does not send it again. The OPEN types CONNECT and DNS
 * (guest to host) carry the guest's outbound connections and name
 * lookups in "allow" mode; FORWARD (host to guest) carries a published
 * port's connections. docs/network.md describes the modes.
 *
 * Everything here is pure: it encodes into and decodes from caller buffers.
 * The agent links this file and libc only.
 */
#ifndef CAPSULE_CHAN_H
#define CAPSULE_CHAN_H

#include <stddef.h>
#include <stdint.h>

#define CHAN_VERSION		5	/* 2: EXEC user/timeout/detach, COPY, STARTED
					 * 3: PING/PONG heartbeat
					 * 4: EXEC entropy seed
					 * 5: HELLO feature bits */
#define CHAN_VERSION_MIN	4	/* the oldest peer still understood */
#define CHAN_MAGIC		0xCA75
#define CHAN_HDR_LEN		12
#define CHAN_MAX_PAYLOAD	(1024 * 1024 + 65536)	/* EXEC carries argv+env */
#define CHAN_MAX_DATA		32768	/* STDIN/STDOUT/STDERR payload */
#define CHAN_WINDOW		(256 * 1024)
#define CHAN_MAX_MSG		4096	/* ERROR, EXIT, RESET, NET_DONE text */

/* Feature bits in HELLO (CHAN_VERSION 5 on). */
#define CHAN_FEAT_STREAMS	0x00000001u	/* OPEN/OPENED/RESET/DATA,
						 * guest-opened streams */
#define CHAN_FEAT_NET		0x00000002u	/* NET, CONNECT, DNS, FORWARD */
#define CHAN_FEAT_REFRESH	0x00000004u	/* REFRESH */
#define CHAN_FEAT_HOSTNAME	0x00000008u	/* REFRESH names the copy */
#define CHAN_FEATURES		(CHAN_FEAT_STREAMS | CHAN_FEAT_NET | \
				 CHAN_FEAT_REFRESH | CHAN_FEAT_HOSTNAME)

#define CHAN_STREAM_GUEST	0x80000000u	/* set on guest-opened ids */

enum chan_kind {
	/* stream 0 */
	CHAN_HELLO	= 1,	/* both ways: version handshake, agent says ready */
	CHAN_ERROR	= 2,	/* both ways: protocol error, text payload */
	CHAN_SHUTDOWN	= 3,	/* host->agent: sync and power off */
	CHAN_PING	= 4,	/* host->agent: u32 sequence number */
	CHAN_PONG	= 5,	/* agent->host: the PING's number */
	CHAN_NET	= 6,	/* host->agent: struct chan_net */
	CHAN_NET_DONE	= 7,	/* agent->host: struct chan_status */
	CHAN_REFRESH	= 8,	/* host->agent: struct chan_refresh */
	/* exec streams, host->agent */
	CHAN_EXEC	= 16,	/* start a command: struct chan_exec */
	CHAN_STDIN	= 17,
	CHAN_EOF	= 18,	/* no more stdin; on byte streams, either way:
				 * no more DATA this way */
	CHAN_RESIZE	= 19,	/* u16 cols, u16 rows */
	CHAN_SIGNAL	= 20,	/* u32 signal number */
	CHAN_CLOSE	= 21,	/* client is gone: kill the process group */
	CHAN_COPY_IN	= 22,	/* receive a cpio archive (STDIN) into a path */
	CHAN_COPY_OUT	= 23,	/* send a path as a cpio archive (STDOUT) */
	/* any stream, either way (CHAN_FEAT_STREAMS) */
	CHAN_OPEN	= 24,	/* struct chan_open: opens the stream */
	CHAN_OPENED	= 25,	/* the OPEN succeeded; empty */
	CHAN_RESET	= 26,	/* struct chan_status: refused or aborted */
	/* exec streams, agent->host */
	CHAN_STDOUT	= 32,
	CHAN_STDERR	= 33,
	CHAN_EXIT	= 34,	/* struct chan_exit; last frame of a stream */
	CHAN_STARTED	= 35,	/* struct chan_started; ends a detached EXEC */
	CHAN_DATA	= 36,	/* either way: a byte stream's bytes */
	/* both ways */
	CHAN_CREDIT	= 48,	/* u32 bytes the sender may send again */
};

struct chan_hdr {
	uint8_t		kind;
	uint8_t		flags;
	uint32_t	stream;
	uint32_t	len;
};

/* HELLO payload: u32 version, u32 boot_ms, u32 features (version 5 on;
 * a version 4 peer sends the first two only). */
struct chan_hello {
	uint32_t	version;
	uint32_t	boot_ms;	/* agent: guest CLOCK_BOOTTIME at ready */
	uint32_t	features;	/* CHAN_FEAT_* */
};
#define CHAN_HELLO_LEN	12
#define CHAN_HELLO_V4_LEN 8

/* REFRESH payload: u64 the host's CLOCK_REALTIME in ns, then
 * CHAN_REFRESH_SEED bytes of the host's randomness; then, only with
 * CHAN_FEAT_HOSTNAME, u8 n and the copy's hostname (n bytes, see
 * chan_hostname_check). */
#define CHAN_REFRESH_SEED	32
#define CHAN_REFRESH_LEN	(8 + CHAN_REFRESH_SEED)
#define CHAN_MAX_HOSTNAME	63
#define CHAN_REFRESH_MAX	(CHAN_REFRESH_LEN + 1 + CHAN_MAX_HOSTNAME)
struct chan_refresh {
	uint64_t	realtime_ns;
	uint8_t		seed[CHAN_REFRESH_SEED];
	char		hostname[CHAN_MAX_HOSTNAME + 1];	/* "": none */
};

/* OPEN payload: u16 type, u16 0, then the type's body.
 *
 *   CONNECT (guest->host): u16 port (1..65535), u8 address kind, u8 0, then
 *	CHAN_ADDR_NAME: a host name, 1..CHAN_MAX_NAME bytes of [a-z0-9_.-]
 *	(lower case, no NUL; labels of 1..63, no empty label, no leading
 *	or trailing '-' or '.'), as the guest's resolver asked for it; or
 *	CHAN_ADDR_IPV4: 4 bytes, network order.
 *	The host connects (or refuses, per the VM's policy) and answers
 *	OPENED or RESET; then DATA both ways.
 *   DNS (guest->host): u16 query type (1 A, 28 AAAA, ...), u16 0, then the
 *	name as for CONNECT. A question, not a stream: the host answers
 *	OPENED if the name may be used (the agent then answers the guest
 *	with an address of its own), or RESET with ENOENT (no such name),
 *	EACCES (not allowed: nothing was asked upstream) or EAGAIN (could
 *	not be looked up now). Nothing else is sent on it.
 *   FORWARD (host->guest): u16 port, u16 0. The agent connects to
 *	127.0.0.1:port in the guest and answers OPENED or RESET; then DATA
 *	both ways. */
enum chan_open_type {
	CHAN_OPEN_CONNECT	= 1,
	CHAN_OPEN_DNS		= 2,
	CHAN_OPEN_FORWARD	= 3,
};
#define CHAN_ADDR_NAME		0
#define CHAN_ADDR_IPV4		4
#define CHAN_MAX_NAME		253

struct chan_open {
	uint16_t	type;
	uint16_t	port;		/* CONNECT, FORWARD */
	uint16_t	qtype;		/* DNS */
	uint8_t		addr_kind;	/* CONNECT: CHAN_ADDR_* (DNS: NAME) */
	uint8_t		ipv4[4];	/* CHAN_ADDR_IPV4 */
	const char	*name;		/* CHAN_ADDR_NAME; not terminated,
					 * points into the payload */
	uint32_t	name_len;
	/* An OPEN of an unknown type decodes with only `type` set and
	 * unknown = 1, so the receiver can refuse just that stream. */
	int		unknown;
};

/* RESET and NET_DONE payload: u32 code (0, or a positive errno value),
 * then message bytes (no NUL) up to CHAN_MAX_MSG. */
struct chan_status {
	uint32_t	code;
	const char	*msg;		/* points into the payload */
	uint32_t	msg_len;
};

/* NET payload: u8 mode, u8 prefix, u16 nroutes, u32 addr, u32 gateway,
 * u32 dns, then nroutes x (u32 net, u8 prefix, u8 0, u16 0); addresses in
 * network order.
 *   CHAN_NET_NONE: no NIC; the agent keeps only lo.
 *   CHAN_NET_NAT: configure the one NIC as addr/prefix with a default
 *	route via gateway and dns as the resolver.
 *   CHAN_NET_ALLOW: no NIC; the agent answers the guest's DNS itself
 *	(asking the host with DNS opens) and carries TCP connections to
 *	its synthetic addresses (CHAN_NET_SYNTH) and to the routes given
 *	(the policy's address ranges) to the host as CONNECT opens. */
enum chan_net_mode {
	CHAN_NET_NONE	= 0,
	CHAN_NET_NAT	= 1,
	CHAN_NET_ALLOW	= 2,
};
#define CHAN_NET_FIXED		16
#define CHAN_NET_MAX_ROUTES	256
#define CHAN_NET_SYNTH		0x7f400000u	/* 127.64.0.0/10, host order */
#define CHAN_NET_SYNTH_PREFIX	10

struct chan_route {
	uint32_t	net;		/* network order */
	uint8_t		prefix;		/* 0..32; bits past it are zero */
};

struct chan_net {
	uint8_t		mode;
	uint8_t		prefix;
	uint32_t	addr, gateway, dns;	/* network order */
	uint16_t	nroutes;
	struct chan_route routes[CHAN_NET_MAX_ROUTES];
};

/* EXEC payload: u8 tty, u8 flags, u16 cols, u16 rows, u16 0, u32 argc,
 * u32 envc, u32 timeout_ms (0: none), u32 seed_len, then NUL-terminated
 * strings: dir, user, argv[0..argc), env[0..envc), then seed_len bytes of
 * entropy seed for the guest's pool (at most CHAN_MAX_SEED), mixed in
 * before the command runs. Decoding points into the payload; the caller
 * keeps the payload alive.
 *
 * A detached EXEC (CHAN_EXEC_DETACH) runs with stdin from /dev/null and its
 * output in a log file in the guest; the agent answers STARTED instead of
 * streaming, and the command outlives the stream (timeout still applies). */
struct chan_exec {
	int		tty;
	int		detach;
	uint16_t	cols, rows;
	uint32_t	timeout_ms;
	const char	*dir;		/* "" means the agent's default */
	const char	*user;		/* "" means root; "uid[:gid]" or names */
	uint32_t	argc, envc;
	const char	**argv;		/* argc entries, caller-sized array */
	const char	**envp;		/* envc entries */
	const uint8_t	*seed;		/* seed_len bytes; may be NULL */
	uint32_t	seed_len;
};
#define CHAN_EXEC_FIXED		24
#define CHAN_MAX_SEED		512
#define CHAN_EXEC_DETACH	0x01

/* COPY_IN and COPY_OUT payload: the guest path, bytes without a NUL, 1 to
 * CHAN_MAX_PATH long. COPY_IN's archive comes as STDIN frames and ends with
 * EOF; COPY_OUT's goes out as STDOUT frames. Either ends with EXIT: 0, or 1
 * with the reason (see common/copy.h for the archive and its semantics). */
#define CHAN_MAX_PATH		4096

/* STARTED payload: u32 pid, then the log file's path (no NUL). */
struct chan_started {
	uint32_t	pid;
	const char	*log;		/* points into the payload */
	uint32_t	log_len;
};

/* EXIT payload: i32 exit_code, i32 signal (0 if none), then message bytes
 * (no NUL) up to CHAN_MAX_MSG. */
struct chan_exit {
	int32_t		exit_code;
	int32_t		signal;
	const char	*msg;		/* points into the payload, not terminated */
	uint32_t	msg_len;
};

/* Header codec. chan_hdr_decode returns 0, or -EBADMSG for a bad magic or
 * non-zero flags (or, on stream 0, an unknown kind), -EMSGSIZE for len
 * over CHAN_MAX_PAYLOAD (or over CHAN_MAX_DATA for data kinds). A frame of
 * an unknown kind on another stream decodes: chan_kind_valid() tells the
 * receiver to refuse that stream with RESET. */
void	chan_hdr_encode(uint8_t out[CHAN_HDR_LEN], const struct chan_hdr *h);
int	chan_hdr_decode(const uint8_t in[CHAN_HDR_LEN], struct chan_hdr *h);
int	chan_kind_valid(unsigned kind);
const char *chan_kind_name(unsigned kind);

/*
 * Frame splitter: given bytes received so far, tell whether a whole frame is
 * there. Returns the frame's total size (header + payload) when it is, 0 when
 * more bytes are needed, or a negative errno from chan_hdr_decode for a bad
 * header (the channel is then unusable: there is no resynchronisation).
 */
long	chan_frame_ready(const uint8_t *buf, size_t have, struct chan_hdr *h);

/* Payload codecs. Encoders return the payload length, or -EMSGSIZE if it
 * does not fit `cap`. Decoders return 0 or -EBADMSG/-E2BIG. */
/* Encodes the layout of h->version (8 bytes for version 4). */
int	chan_hello_encode(uint8_t *out, size_t cap, const struct chan_hello *h);
/* A version 4 HELLO decodes with features 0. */
int	chan_hello_decode(const uint8_t *p, size_t len, struct chan_hello *h);
long	chan_open_encode(uint8_t *out, size_t cap, const struct chan_open *o);
int	chan_open_decode(const uint8_t *p, size_t len, struct chan_open *o);
int	chan_status_encode(uint8_t *out, size_t cap, const struct chan_status *s);
int	chan_status_decode(const uint8_t *p, size_t len, struct chan_status *s);
long	chan_net_encode(uint8_t *out, size_t cap, const struct chan_net *n);
int	chan_net_decode(const uint8_t *p, size_t len, struct chan_net *n);
/* REFRESH: CHAN_REFRESH_LEN bytes, and the hostname's if it has one;
 * or -EMSGSIZE / -EBADMSG (-EINVAL: not a hostname chan_hostname_check
 * takes). */
int	chan_refresh_encode(uint8_t *out, size_t cap,
	    const struct chan_refresh *r);
int	chan_refresh_decode(const uint8_t *p, size_t len,
	    struct chan_refresh *r);
/* Is this a hostname capsule gives: 1..CHAN_MAX_HOSTNAME of [a-z0-9-],
 * not starting or ending with '-'? */
int	chan_hostname_check(const char *name, size_t len);
/* Is this a valid CONNECT/DNS name (see CHAN_OPEN_CONNECT)? */
int	chan_name_check(const char *name, size_t len);
long	chan_exec_encode(uint8_t *out, size_t cap, const struct chan_exec *x);
/* argv/envp must have room for max_args/max_env entries. */
int	chan_exec_decode(const uint8_t *p, size_t len, struct chan_exec *x,
	    uint32_t max_args, uint32_t max_env);
int	chan_started_encode(uint8_t *out, size_t cap,
	    const struct chan_started *st);
int	chan_started_decode(const uint8_t *p, size_t len,
	    struct chan_started *st);
/* Checks a COPY_IN/COPY_OUT path payload: 1..CHAN_MAX_PATH bytes, no NUL,
 * absolute. Returns 0 or -EBADMSG. */
int	chan_path_check(const uint8_t *p, size_t len);
int	chan_exit_encode(uint8_t *out, size_t cap, const struct chan_exit *e);
int	chan_exit_decode(const uint8_t *p, size_t len, struct chan_exit *e);
int	chan_u32_encode(uint8_t *out, size_t cap, uint32_t v);
int	chan_u32_decode(const uint8_t *p, size_t len, uint32_t *v);
int	chan_resize_encode(uint8_t *out, size_t cap, uint16_t cols,
	    uint16_t rows);
int	chan_resize_decode(const uint8_t *p, size_t len, uint16_t *cols,
	    uint16_t *rows);

/*
 * Credit accounting, one per stream and direction.
 *
 * Sender side: `credit` is what it may still send. Receiver side: `held` is
 * what it has received and not yet released, `released` what it has let go
 * of but not yet granted back (grants are batched to save frames).
 */
struct chan_tx_window {
	uint32_t	credit;
};
struct chan_rx_window {
	uint32_t	held;
	uint32_t	released;
};

void	chan_tx_init(struct chan_tx_window *w);
/* How much of `want` may be sent now (0 when the window is closed). */
uint32_t chan_tx_allow(const struct chan_tx_window *w, uint32_t want);
void	chan_tx_consume(struct chan_tx_window *w, uint32_t n);
/* Returns -EPROTO if the grant would open the window past CHAN_WINDOW. */
int	chan_tx_grant(struct chan_tx_window *w, uint32_t n);

void	chan_rx_init(struct chan_rx_window *w);
/* Returns -EPROTO if the peer sent more than its window allows. */
int	chan_rx_receive(struct chan_rx_window *w, uint32_t n);
/* Marks n held bytes as gone; returns the credit to grant now (0 to wait
 * for more, so that grants come in batches of at least CHAN_WINDOW/4). */
uint32_t chan_rx_release(struct chan_rx_window *w, uint32_t n);

#endif /* CAPSULE_CHAN_H */
