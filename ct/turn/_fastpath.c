/* The relay's compiled UDP data path: moves datagrams by the tables Python keeps.
 *
 * Python stays the one authority for state: allocations (``AllocationTable.by_key``),
 * their ``channels``, ``peer_channels``, ``permissions``, ``budget`` and ``relay_fd``,
 * the relay sockets' ``allocation``, ``client_fd`` and ``client_addr``. This module only
 * reads those tables (and spends ``budget`` exactly as ``datapath.py`` does) and moves
 * bytes with recvmmsg/sendmmsg, at most BATCH datagrams per system call. Anything it
 * does not relay itself (STUN requests, odd Send indications, a first drop that needs a
 * log line) goes back to Python through callbacks, after the queued datagrams are sent.
 *
 * drain_listener(fd, allocations, on_stun, drop, limit)
 *     client -> peer: ChannelData and Send indications read from the UDP listener;
 *     ``drop(allocation, reason, detail)`` is DataPath.drop_once.
 * serve_round(epfd, relays, drop, max_events)
 *     one round of the relay's inner epoll: peer -> client for the relay sockets in
 *     ``relays`` (fd -> RelaySocket of a UDP client); other ready fds are returned.
 *
 * Both return counters for ``TurnStats``; the GIL is held throughout (no I/O blocks:
 * every socket is non-blocking and epoll is asked with a zero timeout).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define BATCH 64          /* datagrams per recvmmsg/sendmmsg and per send queue */
#define SLOT 65536        /* bytes of one receive slot (a whole UDP datagram) */
#define HEADROOM 48       /* STUN header + XOR-PEER-ADDRESS (IPv6) + DATA header */
#define RELAY_READ 16     /* datagrams read from one relay socket per readiness */
#define MAX_EVENTS 512

#define MAGIC_COOKIE 0x2112A442u
#define FINGERPRINT_XOR 0x5354554Eu
#define ATTR_XOR_PEER_ADDRESS 0x0012
#define ATTR_DATA 0x0013
#define ATTR_MESSAGE_INTEGRITY 0x0008
#define ATTR_MESSAGE_INTEGRITY_SHA256 0x001C
#define ATTR_FINGERPRINT 0x8028
#define TYPE_SEND_INDICATION 0x0016
#define TYPE_DATA_INDICATION 0x0017

/* ------------------------------------------------------------------ buffers */

typedef struct {
    unsigned char *slots;                 /* BATCH * SLOT, pages touched only when used */
    struct mmsghdr recv[BATCH];
    struct iovec recv_iov[BATCH];
    struct sockaddr_in6 recv_addr[BATCH];
} Receiver;

typedef struct {
    int fd[BATCH];
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH][3];
    struct sockaddr_in6 addr[BATCH];
    unsigned char head[BATCH][HEADROOM];
    int count;
    long dropped;                         /* sends that failed (full buffer, bad address) */
} Sender;

static Receiver receiver;
static Sender sender;
static int busy;                          /* no re-entry while a call is running */
static const unsigned char zeros[4];

static PyObject *r_unbound, *r_truncated, *r_no_permission,
    *r_bandwidth, *r_peer_without_permission;

/* Attribute access. Allocation and RelaySocket use __slots__: a slot is read at its
 * offset (what its member descriptor would do, a data descriptor no instance dict can
 * shadow), found once per type; any other object goes through PyObject_GetAttr. */
enum { A_CHANNELS, A_PERMISSIONS, A_PEER_CHANNELS, A_BUDGET, A_RELAY_FD, A_ALLOCATION,
       A_CLIENT_FD, A_CLIENT_ADDR, A_COUNT };

typedef struct {
    PyTypeObject *type;          /* borrowed: compared, never dereferenced */
    Py_ssize_t offset;           /* -1: not a plain object slot of that type */
} SlotCache;

static SlotCache slot_cache[A_COUNT];
static PyObject *attr_names[A_COUNT];

static Py_ssize_t slot_offset(PyObject *object, int which)
{
    SlotCache *cache = &slot_cache[which];
    PyTypeObject *type = Py_TYPE(object);
    if (cache->type == type)
        return cache->offset;
    Py_ssize_t offset = -1;
    PyObject *descr = _PyType_Lookup(type, attr_names[which]);   /* borrowed */
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY))
            offset = member->offset;
    }
    cache->type = type;
    cache->offset = offset;
    return offset;
}

/* A new reference to ``object.<name>``, or NULL with an exception. */
static PyObject *get_attr(PyObject *object, int which)
{
    Py_ssize_t offset = slot_offset(object, which);
    if (offset >= 0) {
        PyObject *value = *(PyObject **)((char *)object + offset);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(object, attr_names[which]);   /* unset slot: its error */
}

/* ``object.<name> = value``; 0 or -1 with an exception. */
static int set_attr(PyObject *object, int which, PyObject *value)
{
    Py_ssize_t offset = slot_offset(object, which);
    if (offset >= 0) {
        PyObject **slot = (PyObject **)((char *)object + offset);
        Py_INCREF(value);
        Py_XSETREF(*slot, value);
        return 0;
    }
    return PyObject_SetAttr(object, attr_names[which], value);
}

/* A fast xorshift for Data indication transaction ids, seeded from the kernel. */
static uint64_t rng_state;

static uint64_t next_random(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------------ CRC-32 (FINGERPRINT) */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_of(const unsigned char *data, size_t size)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < size; i++)
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ------------------------------------------------------------------ addresses */

/* ``(host, port)`` as Python's socket module gives it (numeric host, scope for IPv6). */
static PyObject *make_address_tuple(const struct sockaddr_in6 *addr)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    int port;
    if (addr->sin6_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)addr;
        if (!inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host))
            return NULL;
        port = ntohs(v4->sin_port);
    } else if (addr->sin6_family == AF_INET6) {
        if (addr->sin6_scope_id) {
            if (getnameinfo((const struct sockaddr *)addr, sizeof *addr, host, sizeof host,
                            NULL, 0, NI_NUMERICHOST))
                return NULL;
        } else if (!inet_ntop(AF_INET6, &addr->sin6_addr, host, sizeof host)) {
            return NULL;
        }
        port = ntohs(addr->sin6_port);
    } else {
        return NULL;
    }
    return Py_BuildValue("(si)", host, port);
}

/* Recently seen addresses and their tuples (the same few clients and peers send again and
 * again): direct-mapped, an entry replaced on collision. */
#define ADDRESS_CACHE 1024

typedef struct {
    struct sockaddr_in6 addr;
    PyObject *tuple;
} CachedAddress;

static CachedAddress address_cache[ADDRESS_CACHE];

static unsigned address_hash(const struct sockaddr_in6 *a)
{
    uint64_t h;
    if (a->sin6_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        h = ((uint64_t)v4->sin_addr.s_addr << 16) ^ v4->sin_port;
    } else {
        uint64_t words[2];
        memcpy(words, &a->sin6_addr, sizeof words);
        h = words[0] ^ (words[1] * 0x9E3779B97F4A7C15ULL) ^ a->sin6_port ^
            ((uint64_t)a->sin6_scope_id << 32);
    }
    h *= 0x9E3779B97F4A7C15ULL;
    return (unsigned)(h >> 54) % ADDRESS_CACHE;   /* the top 10 bits */
}

/* Only the bytes that make the (host, port) pair: the rest of the slot is zeroed. */
static void clean_address(struct sockaddr_in6 *a)
{
    if (a->sin6_family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)a;
        memset(v4->sin_zero, 0, sizeof v4->sin_zero);
        memset((char *)a + sizeof *v4, 0, sizeof *a - sizeof *v4);
    } else {
        a->sin6_flowinfo = 0;
    }
}

/* A new reference to the tuple of ``addr`` (NULL: not an address Python would give). */
static PyObject *address_tuple(const struct sockaddr_in6 *addr)
{
    struct sockaddr_in6 key;
    memcpy(&key, addr, sizeof key);
    clean_address(&key);
    CachedAddress *entry = &address_cache[address_hash(&key)];
    if (entry->tuple != NULL && memcmp(&entry->addr, &key, sizeof key) == 0) {
        Py_INCREF(entry->tuple);
        return entry->tuple;
    }
    PyObject *tuple = make_address_tuple(&key);
    if (tuple == NULL)
        return NULL;
    Py_XSETREF(entry->tuple, tuple);
    Py_INCREF(tuple);
    entry->addr = key;
    return tuple;
}

/* ``(host, port)`` to a socket address; 0 on success. */
static int convert_address(PyObject *peer, struct sockaddr_in6 *out)
{
    if (!PyTuple_Check(peer) || PyTuple_GET_SIZE(peer) < 2)
        return -1;
    PyObject *host = PyTuple_GET_ITEM(peer, 0), *port = PyTuple_GET_ITEM(peer, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(port))
        return -1;
    const char *text = PyUnicode_AsUTF8(host);
    long number = PyLong_AsLong(port);
    if (text == NULL || number < 0 || number > 65535) {
        PyErr_Clear();
        return -1;
    }
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)number);
        return 0;
    }
    if (inet_pton(AF_INET6, text, &out->sin6_addr) == 1) {
        out->sin6_family = AF_INET6;
        out->sin6_port = htons((uint16_t)number);
        return 0;
    }
    return -1;
}

/* The tuples Python keeps (channel peers, clients) are the same objects every time: their
 * socket addresses are cached by identity (each entry holds a reference, so an address
 * is never mistaken for a freed tuple's). */
typedef struct {
    PyObject *tuple;
    struct sockaddr_in6 addr;
} ConvertedAddress;

static ConvertedAddress converted[ADDRESS_CACHE];

static int parse_address(PyObject *peer, struct sockaddr_in6 *out)
{
    ConvertedAddress *entry = &converted[((uintptr_t)peer >> 4) % ADDRESS_CACHE];
    if (entry->tuple == peer) {
        *out = entry->addr;
        return 0;
    }
    if (convert_address(peer, out))
        return -1;
    Py_INCREF(peer);
    Py_XSETREF(entry->tuple, peer);
    entry->addr = *out;
    return 0;
}

static socklen_t address_length(const struct sockaddr_in6 *addr)
{
    return addr->sin6_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof *addr;
}

/* ------------------------------------------------------------------ sending */

/* Send every queued datagram, grouped by socket (order kept per socket). */
static void flush(void)
{
    Sender *s = &sender;
    int n = s->count;
    if (n == 0)
        return;
    char done[BATCH] = {0};
    struct mmsghdr group[BATCH];
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        int fd = s->fd[i], size = 0;
        for (int j = i; j < n; j++) {
            if (!done[j] && s->fd[j] == fd) {
                group[size++] = s->msg[j];
                done[j] = 1;
            }
        }
        int at = 0, tries = 0;
        while (at < size && tries++ < 2 * BATCH) {
            int sent = sendmmsg(fd, group + at, size - at, MSG_DONTWAIT);
            if (sent > 0) {
                at += sent;
            } else if (sent < 0 && errno == EINTR) {
                continue;
            } else {
                s->dropped++;      /* this one cannot go (full buffer, refused, bad peer) */
                at++;
            }
        }
        s->dropped += size - at;
    }
    s->count = 0;
}

/* A free send slot (flushing when all are taken). */
static int send_slot(void)
{
    if (sender.count == BATCH)
        flush();
    return sender.count++;
}

static void queue_send(int fd, const struct sockaddr_in6 *addr, const unsigned char *head,
                       size_t head_size, const unsigned char *payload, size_t size,
                       size_t pad)
{
    int i = send_slot();
    Sender *s = &sender;
    s->fd[i] = fd;
    memcpy(&s->addr[i], addr, sizeof *addr);
    int parts = 0;
    if (head_size) {
        memcpy(s->head[i], head, head_size);
        s->iov[i][parts].iov_base = s->head[i];
        s->iov[i][parts++].iov_len = head_size;
    }
    s->iov[i][parts].iov_base = (void *)payload;
    s->iov[i][parts++].iov_len = size;
    if (pad) {
        s->iov[i][parts].iov_base = (void *)zeros;
        s->iov[i][parts++].iov_len = pad;
    }
    struct msghdr *m = &s->msg[i].msg_hdr;
    memset(m, 0, sizeof *m);
    m->msg_name = &s->addr[i];
    m->msg_namelen = address_length(addr);
    m->msg_iov = s->iov[i];
    m->msg_iovlen = parts;
}

/* ------------------------------------------------------------------ receiving */

/* Read up to ``count`` datagrams of ``fd`` into slots from ``first``; how many (0: none). */
static int receive(int fd, int first, int count)
{
    Receiver *r = &receiver;
    for (int i = first; i < first + count; i++) {
        r->recv_iov[i].iov_base = r->slots + (size_t)i * SLOT;
        r->recv_iov[i].iov_len = SLOT;
        struct msghdr *m = &r->recv[i].msg_hdr;
        memset(m, 0, sizeof *m);
        m->msg_name = &r->recv_addr[i];
        m->msg_namelen = sizeof r->recv_addr[i];
        m->msg_iov = &r->recv_iov[i];
        m->msg_iovlen = 1;
    }
    for (int tries = 0; tries < 8; tries++) {
        int got = recvmmsg(fd, r->recv + first, count, MSG_DONTWAIT, NULL);
        if (got >= 0) {
            for (int i = first; i < first + got; i++)   /* no address: not a UDP peer */
                if (r->recv[i].msg_hdr.msg_namelen < sizeof(struct sockaddr_in))
                    r->recv_addr[i].sin6_family = AF_UNSPEC;
            return got;
        }
        if (errno != EINTR && errno != ECONNREFUSED)  /* ICMP of an earlier send: go on */
            return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ the shared rules */

typedef struct {
    long packets, bytes, dropped;
} Counters;

/* drop(allocation, reason, detail): DataPath.drop_once, after sending what is queued. */
static int call_drop(PyObject *drop, PyObject *allocation, PyObject *reason, PyObject *detail)
{
    flush();
    PyObject *result = PyObject_CallFunctionObjArgs(drop, allocation, reason,
                                                    detail ? detail : Py_None, NULL);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* Spend ``size`` of the allocation's budget as datapath.py does; 1 when still >= 0. */
static int spend(PyObject *allocation, Py_ssize_t size)
{
    PyObject *budget = get_attr(allocation, A_BUDGET);
    if (budget == NULL)
        return -1;
    double left = PyFloat_AsDouble(budget);
    Py_DECREF(budget);
    if (left == -1.0 && PyErr_Occurred())
        return -1;
    if (isinf(left) && left > 0)           /* no bandwidth limit: nothing to write back */
        return 1;
    left -= (double)size;
    PyObject *value = PyFloat_FromDouble(left);
    if (value == NULL)
        return -1;
    int failed = set_attr(allocation, A_BUDGET, value);
    Py_DECREF(value);
    if (failed)
        return -1;
    return left >= 0;
}

/* Permission for ``host`` (a str); 1 yes, 0 no, -1 error. */
static int permitted(PyObject *allocation, PyObject *host)
{
    PyObject *permissions = get_attr(allocation, A_PERMISSIONS);
    if (permissions == NULL)
        return -1;
    int found = PyDict_Check(permissions) ? PyDict_Contains(permissions, host) : 0;
    Py_DECREF(permissions);
    return found;
}

/* DataPath.to_peer: permission, budget, send on the relay socket, count. */
static int to_peer(PyObject *allocation, PyObject *host, const struct sockaddr_in6 *peer,
                   const unsigned char *payload, Py_ssize_t size, PyObject *drop, Counters *c)
{
    int ok = permitted(allocation, host);
    if (ok < 0)
        return -1;
    if (!ok)
        return call_drop(drop, allocation, r_no_permission, host);
    ok = spend(allocation, size);
    if (ok < 0)
        return -1;
    if (!ok)
        return call_drop(drop, allocation, r_bandwidth, NULL);
    PyObject *fd_object = get_attr(allocation, A_RELAY_FD);
    if (fd_object == NULL)
        return -1;
    long fd = PyLong_AsLong(fd_object);
    Py_DECREF(fd_object);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < 0)
        c->dropped++;
    else
        queue_send((int)fd, peer, NULL, 0, payload, (size_t)size, 0);
    c->packets++;
    c->bytes += size;
    return 0;
}

/* ------------------------------------------------------------------ client -> peer */

/* A well-formed Send indication: its peer and data; 1 when it is one this module relays,
 * 0 when Python must judge it (anything unusual, integrity attributes, bad FINGERPRINT). */
static int parse_send(const unsigned char *d, size_t size, struct sockaddr_in6 *peer,
                      const unsigned char **data, size_t *data_size)
{
    if (size < 20 || ((d[0] << 8) | d[1]) != TYPE_SEND_INDICATION)
        return 0;
    size_t length = (d[2] << 8) | d[3];
    uint32_t cookie = ((uint32_t)d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7];
    if (cookie != MAGIC_COOKIE || (length & 3) || length + 20 != size)
        return 0;
    const unsigned char *xpa = NULL;
    size_t xpa_size = 0, pos = 20;
    *data = NULL;
    while (pos < size) {
        if (pos + 4 > size)
            return 0;
        unsigned type = (d[pos] << 8) | d[pos + 1];
        size_t len = (d[pos + 2] << 8) | d[pos + 3];
        if (pos + 4 + len > size)
            return 0;
        if (type == ATTR_FINGERPRINT) {
            if (len != 4 || pos + 8 != size)
                return 0;
            uint32_t want = ((uint32_t)d[pos + 4] << 24) | (d[pos + 5] << 16) |
                            (d[pos + 6] << 8) | d[pos + 7];
            if ((crc32_of(d, pos) ^ FINGERPRINT_XOR) != want)
                return 0;
        } else if (type == ATTR_MESSAGE_INTEGRITY || type == ATTR_MESSAGE_INTEGRITY_SHA256) {
            return 0;
        } else if (type == ATTR_XOR_PEER_ADDRESS && xpa == NULL) {
            xpa = d + pos + 4;
            xpa_size = len;
        } else if (type == ATTR_DATA && *data == NULL) {
            *data = d + pos + 4;
            *data_size = len;
        }
        pos += 4 + ((len + 3) & ~(size_t)3);
    }
    if (pos != size || xpa == NULL || *data == NULL || (xpa_size != 8 && xpa_size != 20))
        return 0;
    memset(peer, 0, sizeof *peer);
    uint16_t port = (uint16_t)(((xpa[2] << 8) | xpa[3]) ^ (MAGIC_COOKIE >> 16));
    if (xpa[1] == 1 && xpa_size == 8) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)peer;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        unsigned char *raw = (unsigned char *)&v4->sin_addr;
        for (int i = 0; i < 4; i++)
            raw[i] = xpa[4 + i] ^ d[4 + i];
        return 1;
    }
    if (xpa[1] == 2 && xpa_size == 20) {
        peer->sin6_family = AF_INET6;
        peer->sin6_port = htons(port);
        unsigned char *raw = (unsigned char *)&peer->sin6_addr;
        for (int i = 0; i < 16; i++)
            raw[i] = xpa[4 + i] ^ d[4 + i];   /* cookie, then the transaction id */
        return 1;
    }
    return 0;
}

/* A borrowed int for a ChannelData channel number (0x4000-0x7FFF), made once. */
static PyObject *channel_numbers[0x4000];

static PyObject *channel_number(long channel)
{
    PyObject **slot = &channel_numbers[channel - 0x4000];
    if (*slot == NULL)
        *slot = PyLong_FromLong(channel);
    return *slot;
}

static int channel_data(PyObject *allocation, const unsigned char *d, size_t size,
                        PyObject *drop, Counters *c)
{
    long channel = (d[0] << 8) | d[1];
    size_t length = (d[2] << 8) | d[3];
    PyObject *channels = get_attr(allocation, A_CHANNELS);
    if (channels == NULL)
        return -1;
    PyObject *number = channel_number(channel);
    PyObject *peer = number && PyDict_Check(channels) ? PyDict_GetItemWithError(channels, number)
                                                      : NULL;
    Py_XINCREF(peer);
    Py_DECREF(channels);
    if (peer == NULL) {
        if (PyErr_Occurred())
            return -1;
        return call_drop(drop, allocation, r_unbound, NULL);
    }
    int result;
    struct sockaddr_in6 to;
    if (length > size - 4)
        result = call_drop(drop, allocation, r_truncated, NULL);
    else if (parse_address(peer, &to))
        result = (c->dropped++, 0);
    else
        result = to_peer(allocation, PyTuple_GET_ITEM(peer, 0), &to, d + 4, (Py_ssize_t)length,
                         drop, c);
    Py_DECREF(peer);
    return result;
}

static int send_indication(PyObject *allocation, const struct sockaddr_in6 *peer,
                           const unsigned char *data, size_t size, PyObject *drop, Counters *c)
{
    PyObject *address = address_tuple(peer);
    if (address == NULL) {
        PyErr_Clear();
        c->dropped++;
        return 0;
    }
    int result = to_peer(allocation, PyTuple_GET_ITEM(address, 0), peer, data,
                         (Py_ssize_t)size, drop, c);
    Py_DECREF(address);
    return result;
}

/* on_stun(data, addr) -> bool: Python answers the message; False: stop reading. */
static int call_stun(PyObject *on_stun, const unsigned char *d, size_t size, PyObject *addr)
{
    flush();
    PyObject *data = PyBytes_FromStringAndSize((const char *)d, (Py_ssize_t)size);
    if (data == NULL)
        return -1;
    PyObject *result = PyObject_CallFunctionObjArgs(on_stun, data, addr, NULL);
    Py_DECREF(data);
    if (result == NULL)
        return -1;
    int go_on = PyObject_IsTrue(result);
    Py_DECREF(result);
    return go_on;
}

static PyObject *drain_listener(PyObject *module, PyObject *args)
{
    int fd, limit;
    PyObject *allocations, *on_stun, *drop;
    if (!PyArg_ParseTuple(args, "iO!OOi", &fd, &PyDict_Type, &allocations, &on_stun, &drop,
                          &limit))
        return NULL;
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "the fast path is already running");
        return NULL;
    }
    busy = 1;
    Counters c = {0, 0, 0};
    int failed = 0, stop = 0, read = 0;
    while (!stop && !failed && read < limit) {
        int want = limit - read < BATCH ? limit - read : BATCH;
        flush();                           /* queued datagrams point into the slots */
        int got = receive(fd, 0, want);
        if (got <= 0)
            break;
        read += got;
        for (int i = 0; i < got && !failed && !stop; i++) {
            const unsigned char *d = receiver.slots + (size_t)i * SLOT;
            size_t size = receiver.recv[i].msg_len;
            if (size < 4)
                continue;
            unsigned first = d[0];
            if (first >= 0x80) {
                c.dropped++;
                continue;
            }
            PyObject *addr = address_tuple(&receiver.recv_addr[i]);
            if (addr == NULL) {
                PyErr_Clear();
                c.dropped++;
                continue;
            }
            struct sockaddr_in6 peer;
            const unsigned char *payload;
            size_t payload_size = 0;
            if (first >= 0x40 ||
                parse_send(d, size, &peer, &payload, &payload_size)) {
                PyObject *allocation = PyDict_GetItemWithError(allocations, addr);
                if (allocation == NULL) {
                    if (PyErr_Occurred())
                        failed = 1;
                    else
                        c.dropped++;
                } else {
                    Py_INCREF(allocation);
                    if (first >= 0x40)
                        failed = channel_data(allocation, d, size, drop, &c) < 0;
                    else
                        failed = send_indication(allocation, &peer, payload, payload_size,
                                                 drop, &c) < 0;
                    Py_DECREF(allocation);
                }
            } else {
                int go_on = call_stun(on_stun, d, size, addr);
                if (go_on < 0)
                    failed = 1;
                else if (!go_on)
                    stop = 1;
            }
            Py_DECREF(addr);
        }
        if (got < want)
            break;
    }
    flush();
    c.dropped += sender.dropped;
    sender.dropped = 0;
    busy = 0;
    if (failed)
        return NULL;
    return Py_BuildValue("(lll)", c.packets, c.bytes, c.dropped);
}

/* ------------------------------------------------------------------ peer -> client */

/* The Data indication around ``size`` bytes from ``peer``; its header's length. */
static size_t data_indication(unsigned char *h, const struct sockaddr_in6 *peer, size_t size)
{
    size_t xpa = peer->sin6_family == AF_INET ? 8 : 20;
    size_t length = 4 + xpa + 4 + ((size + 3) & ~(size_t)3);
    h[0] = TYPE_DATA_INDICATION >> 8;
    h[1] = TYPE_DATA_INDICATION & 0xFF;
    h[2] = (unsigned char)(length >> 8);
    h[3] = (unsigned char)length;
    h[4] = 0x21; h[5] = 0x12; h[6] = 0xA4; h[7] = 0x42;
    uint64_t a = next_random(), b = next_random();
    memcpy(h + 8, &a, 8);
    memcpy(h + 16, &b, 4);
    unsigned char *x = h + 20;
    x[0] = ATTR_XOR_PEER_ADDRESS >> 8;
    x[1] = ATTR_XOR_PEER_ADDRESS & 0xFF;
    x[2] = 0;
    x[3] = (unsigned char)xpa;
    x[4] = 0;
    if (peer->sin6_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)peer;
        uint16_t port = ntohs(v4->sin_port) ^ (MAGIC_COOKIE >> 16);
        x[5] = 1;
        x[6] = port >> 8;
        x[7] = port & 0xFF;
        const unsigned char *raw = (const unsigned char *)&v4->sin_addr;
        for (int i = 0; i < 4; i++)
            x[8 + i] = raw[i] ^ h[4 + i];
    } else {
        uint16_t port = ntohs(peer->sin6_port) ^ (MAGIC_COOKIE >> 16);
        x[5] = 2;
        x[6] = port >> 8;
        x[7] = port & 0xFF;
        const unsigned char *raw = (const unsigned char *)&peer->sin6_addr;
        for (int i = 0; i < 16; i++)
            x[8 + i] = raw[i] ^ h[4 + i];   /* cookie, then the transaction id */
    }
    unsigned char *data = x + 4 + xpa;
    data[0] = ATTR_DATA >> 8;
    data[1] = ATTR_DATA & 0xFF;
    data[2] = (unsigned char)(size >> 8);
    data[3] = (unsigned char)size;
    return 20 + 4 + xpa + 4;
}

static long long_attr(PyObject *object, int which)
{
    PyObject *value = get_attr(object, which);
    if (value == NULL)
        return -2;
    long number = PyLong_AsLong(value);
    Py_DECREF(value);
    if (number == -1 && PyErr_Occurred())
        return -2;
    return number;
}

/* What a relay socket's datagrams need: its allocation (a new reference, NULL once the
 * socket is closed) and its client's descriptor and address (fd -1: cannot send). Read
 * once per readiness, and again after any call into Python. */
typedef struct {
    PyObject *allocation;
    long client_fd;
    struct sockaddr_in6 client;
} RelayView;

static int view_relay(PyObject *relay, RelayView *v)
{
    Py_CLEAR(v->allocation);
    PyObject *allocation = get_attr(relay, A_ALLOCATION);
    if (allocation == NULL)
        return -1;
    if (allocation == Py_None) {
        Py_DECREF(allocation);
        return 0;
    }
    v->allocation = allocation;
    v->client_fd = long_attr(relay, A_CLIENT_FD);
    if (v->client_fd == -2)
        return -1;
    PyObject *client = get_attr(relay, A_CLIENT_ADDR);
    if (client == NULL)
        return -1;
    if (v->client_fd >= 0 && parse_address(client, &v->client))
        v->client_fd = -1;
    Py_DECREF(client);
    return 0;
}

/* RelaySocket.read_one for one datagram read into slot ``i``; -1 on error, 0 go on,
 * 1 when the relay socket is closed. */
static int relay_one(PyObject *relay, RelayView *v, int i, PyObject *drop, Counters *c)
{
    if (v->allocation == NULL)
        return 1;
    PyObject *allocation = v->allocation;
    int result = 0;
    const unsigned char *payload = receiver.slots + (size_t)i * SLOT;
    size_t size = receiver.recv[i].msg_len;
    const struct sockaddr_in6 *from = &receiver.recv_addr[i];
    PyObject *addr = address_tuple(from), *channels = NULL;
    if (addr == NULL) {
        PyErr_Clear();
        c->dropped++;
        goto done;
    }
    int ok = permitted(allocation, PyTuple_GET_ITEM(addr, 0));
    if (ok <= 0) {
        result = ok < 0 ? -1 : call_drop(drop, allocation, r_peer_without_permission,
                                         PyTuple_GET_ITEM(addr, 0));
        if (result == 0)
            result = view_relay(relay, v);
        goto done;
    }
    ok = spend(allocation, (Py_ssize_t)size);
    if (ok <= 0) {
        result = ok < 0 ? -1 : call_drop(drop, allocation, r_bandwidth, NULL);
        if (result == 0)
            result = view_relay(relay, v);
        goto done;
    }
    channels = get_attr(allocation, A_PEER_CHANNELS);
    if (channels == NULL) {
        result = -1;
        goto done;
    }
    PyObject *channel = PyDict_Check(channels) ? PyDict_GetItemWithError(channels, addr) : NULL;
    if (channel == NULL && PyErr_Occurred()) {
        result = -1;
        goto done;
    }
    if (v->client_fd < 0 || size > 65535 - HEADROOM) {  /* no client, or too big to frame */
        c->dropped++;
        goto done;
    }
    unsigned char head[HEADROOM];
    if (channel != NULL) {
        long number = PyLong_AsLong(channel);
        if (number == -1 && PyErr_Occurred()) {
            result = -1;
            goto done;
        }
        head[0] = (unsigned char)(number >> 8);
        head[1] = (unsigned char)number;
        head[2] = (unsigned char)(size >> 8);
        head[3] = (unsigned char)size;
        queue_send((int)v->client_fd, &v->client, head, 4, payload, size, 0);
    } else {
        size_t head_size = data_indication(head, from, size);
        queue_send((int)v->client_fd, &v->client, head, head_size, payload, size,
                   ((size + 3) & ~(size_t)3) - size);
    }
    c->packets++;
    c->bytes += (long)size;
done:
    Py_XDECREF(channels);
    Py_XDECREF(addr);
    return result;
}

static PyObject *serve_round(PyObject *module, PyObject *args)
{
    int epfd, max_events;
    PyObject *relays, *drop;
    if (!PyArg_ParseTuple(args, "iO!Oi", &epfd, &PyDict_Type, &relays, &drop, &max_events))
        return NULL;
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "the fast path is already running");
        return NULL;
    }
    if (max_events < 1 || max_events > MAX_EVENTS)
        max_events = MAX_EVENTS;
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(epfd, events, max_events, 0);
    if (n < 0) {
        if (errno == EINTR)
            n = 0;
        else
            return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *others = PyList_New(0);
    if (others == NULL)
        return NULL;
    busy = 1;
    Counters c = {0, 0, 0};
    int failed = 0, slot = 0;
    for (int e = 0; e < n && !failed; e++) {
        int fd = events[e].data.fd;
        PyObject *key = PyLong_FromLong(fd);
        if (key == NULL) {
            failed = 1;
            break;
        }
        PyObject *relay = PyDict_GetItemWithError(relays, key);
        if (relay == NULL) {
            failed = PyErr_Occurred() != NULL || PyList_Append(others, key) < 0;
            Py_DECREF(key);
            continue;
        }
        Py_DECREF(key);
        Py_INCREF(relay);
        if (slot + RELAY_READ > BATCH) {   /* every slot read is queued: send, reuse */
            flush();
            slot = 0;
        }
        int got = receive(fd, slot, RELAY_READ);
        RelayView view = {NULL, -1};
        if (got > 0 && view_relay(relay, &view) < 0)
            failed = 1;
        for (int i = slot; i < slot + got && !failed; i++) {
            int r = relay_one(relay, &view, i, drop, &c);
            if (r < 0)
                failed = 1;
            if (r)
                break;
        }
        Py_XDECREF(view.allocation);
        slot += got;
        Py_DECREF(relay);
    }
    flush();
    c.dropped += sender.dropped;
    sender.dropped = 0;
    busy = 0;
    if (failed) {
        Py_DECREF(others);
        return NULL;
    }
    return Py_BuildValue("(iNlll)", n, others, c.packets, c.bytes, c.dropped);
}

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"drain_listener", drain_listener, METH_VARARGS,
     "drain_listener(fd, allocations, on_stun, drop, limit) -> (packets, bytes, dropped)\n"
     "Relay ChannelData and Send indications read from the UDP listener ``fd`` (at most "
     "``limit`` datagrams) to peers; other STUN messages go to ``on_stun(data, addr)``."},
    {"serve_round", serve_round, METH_VARARGS,
     "serve_round(epfd, relays, drop, max_events) -> (events, other_fds, packets, bytes, "
     "dropped)\nOne zero-timeout round of the epoll set ``epfd``: relay sockets in "
     "``relays`` (fd -> RelaySocket) relay peer data to their UDP clients."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ct.turn._fastpath",
    "The relay's compiled UDP data path (recvmmsg/sendmmsg) over Python's tables.", -1,
    methods,
};

#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (receiver.slots == NULL) {
        receiver.slots = PyMem_RawMalloc((size_t)BATCH * SLOT);
        if (receiver.slots == NULL)
            return PyErr_NoMemory();
    }
    crc_init();
    if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state || rng_state == 0)
        rng_state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)&rng_state;
    INTERN(attr_names[A_CHANNELS], "channels");
    INTERN(attr_names[A_PERMISSIONS], "permissions");
    INTERN(attr_names[A_PEER_CHANNELS], "peer_channels");
    INTERN(attr_names[A_BUDGET], "budget");
    INTERN(attr_names[A_RELAY_FD], "relay_fd");
    INTERN(attr_names[A_ALLOCATION], "allocation");
    INTERN(attr_names[A_CLIENT_FD], "client_fd");
    INTERN(attr_names[A_CLIENT_ADDR], "client_addr");
    INTERN(r_unbound, "ChannelData on an unbound channel");
    INTERN(r_truncated, "truncated ChannelData");
    INTERN(r_no_permission, "no permission for peer");
    INTERN(r_bandwidth, "bandwidth limit");
    INTERN(r_peer_without_permission, "data from a peer without permission");
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "BATCH", BATCH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
