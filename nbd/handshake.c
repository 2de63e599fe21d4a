/*
 * Fixed newstyle negotiation, on the connection's reader thread.
 *
 * Every option is bounded: its data may be at most NBD_MAX_OPTION_LENGTH
 * bytes (longer ones up to NBD_OPTION_DRAIN_LIMIT are skipped and refused
 * with NBD_REP_ERR_TOO_BIG, beyond that the connection is closed), and a
 * connection may send at most NBD_MAX_OPTIONS options.  Violations of a
 * MUST (bad magic, unknown client flags, options other than EXPORT_NAME
 * without fixed newstyle, an EXPORT_NAME we cannot satisfy) close the
 * connection; everything else gets an error reply and negotiation goes on.
 */
#include "nbd/nbd-internal.h"
#include "util/bswap.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

typedef enum {
    OPT_CONTINUE,
    OPT_GO,          /* enter transmission */
    OPT_CLOSE,       /* end the connection */
} OptResult;

/* ---- Option replies ----------------------------------------------------- */

static int opt_reply(NbdClient *c, uint32_t opt, uint32_t type,
                     const void *data, uint32_t len)
{
    uint8_t hdr[20];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)data, .iov_len = len },
    };

    stq_be(hdr, NBD_REP_MAGIC);
    stl_be(hdr + 8, opt);
    stl_be(hdr + 12, type);
    stl_be(hdr + 16, len);
    return nbd_chan_writev(c, iov, len ? 2 : 1);
}

static OptResult opt_ack(NbdClient *c, uint32_t opt)
{
    return opt_reply(c, opt, NBD_REP_ACK, NULL, 0) < 0 ? OPT_CLOSE
                                                       : OPT_CONTINUE;
}

static OptResult G_GNUC_PRINTF(4, 5)
opt_error(NbdClient *c, uint32_t opt, uint32_t type, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;
    size_t len;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    len = MIN(strlen(msg), NBD_MAX_STRING_SIZE);
    return opt_reply(c, opt, type, msg, (uint32_t)len) < 0 ? OPT_CLOSE
                                                           : OPT_CONTINUE;
}

/* ---- Helpers ------------------------------------------------------------ */

/* A length-prefixed string at *pos of @data; NULL if it does not fit. */
static char *take_string(const uint8_t *data, uint32_t len, uint32_t *pos,
                         uint32_t *slen)
{
    uint32_t n;

    if (len - *pos < 4) {
        return NULL;
    }
    n = ldl_be(data + *pos);
    *pos += 4;
    if (n > len - *pos) {
        return NULL;
    }
    *slen = n;
    *pos += n;
    return g_strndup((const char *)data + *pos - n, n);
}

static uint16_t client_tx_flags(NbdClient *c, NbdExport *exp)
{
    uint16_t flags = exp->flags;

    if (c->structured) {
        flags |= NBD_FLAG_SEND_DF;
    }
    if (!nbd_server_single_conn()) {
        flags |= NBD_FLAG_CAN_MULTI_CONN;
    }
    return flags;
}

static void clear_meta(NbdClient *c)
{
    if (c->meta_exp) {
        nbd_export_unref(c->meta_exp);
        c->meta_exp = NULL;
    }
    g_free(c->meta_selected);
    c->meta_selected = NULL;
    c->n_meta_selected = 0;
}

/* Make @exp the connection's export; false if it is going away. */
static bool choose_export(NbdClient *c, NbdExport *exp)
{
    if (!nbd_export_attach(exp)) {
        nbd_export_unref(exp);
        return false;
    }
    g_atomic_pointer_set(&c->exp, exp);
    c->tx_flags = client_tx_flags(c, exp);
    if (c->meta_exp != exp) {
        clear_meta(c);
    }
    return true;
}

/* ---- Options ------------------------------------------------------------ */

static OptResult opt_export_name(NbdClient *c, const uint8_t *data,
                                 uint32_t len)
{
    g_autofree char *name = g_strndup((const char *)data, len);
    NbdExport *exp = nbd_export_lookup(name);
    uint8_t reply[8 + 2 + 124] = { 0 };

    if (!exp || !choose_export(c, exp)) {
        nbd_client_log(c, "export '%s' not present, closing", name);
        return OPT_CLOSE;
    }
    stq_be(reply, exp->size);
    stw_be(reply + 8, c->tx_flags);
    if (nbd_chan_write(c, reply, c->no_zeroes ? 10 : sizeof(reply)) < 0) {
        return OPT_CLOSE;
    }
    return OPT_GO;
}

static OptResult opt_list(NbdClient *c, uint32_t opt, uint32_t len)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) descs = g_ptr_array_new_with_free_func(g_free);

    if (len != 0) {
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "NBD_OPT_LIST takes no data");
    }
    nbd_export_names(names, descs);
    for (guint i = 0; i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        const char *desc = g_ptr_array_index(descs, i);
        size_t nlen = strlen(name), dlen = desc ? strlen(desc) : 0;
        g_autofree uint8_t *buf = g_malloc(4 + nlen + dlen);

        stl_be(buf, (uint32_t)nlen);
        memcpy(buf + 4, name, nlen);
        if (dlen) {
            memcpy(buf + 4 + nlen, desc, dlen);
        }
        if (opt_reply(c, opt, NBD_REP_SERVER, buf,
                      (uint32_t)(4 + nlen + dlen)) < 0) {
            return OPT_CLOSE;
        }
    }
    return opt_ack(c, opt);
}

static int send_info(NbdClient *c, uint32_t opt, uint16_t type,
                     const void *payload, size_t len)
{
    g_autofree uint8_t *buf = g_malloc(2 + len);

    stw_be(buf, type);
    if (len) {
        memcpy(buf + 2, payload, len);
    }
    return opt_reply(c, opt, NBD_REP_INFO, buf, (uint32_t)(2 + len));
}

static int send_export_infos(NbdClient *c, uint32_t opt, NbdExport *exp,
                             bool want_name, bool want_desc)
{
    uint8_t sizes[12], export_info[10];
    uint16_t flags = client_tx_flags(c, exp);

    if (want_name &&
        send_info(c, opt, NBD_INFO_NAME, exp->name, strlen(exp->name)) < 0) {
        return -EIO;
    }
    if (want_desc && exp->description &&
        send_info(c, opt, NBD_INFO_DESCRIPTION, exp->description,
                  strlen(exp->description)) < 0) {
        return -EIO;
    }
    /* Sent even when not asked for: the block layer accepts any size. */
    stl_be(sizes, 1);
    stl_be(sizes + 4, NBD_PREFERRED_BLOCK_SIZE);
    stl_be(sizes + 8, NBD_MAX_PAYLOAD);
    if (send_info(c, opt, NBD_INFO_BLOCK_SIZE, sizes, sizeof(sizes)) < 0) {
        return -EIO;
    }
    stq_be(export_info, exp->size);
    stw_be(export_info + 8, flags);
    return send_info(c, opt, NBD_INFO_EXPORT, export_info,
                     sizeof(export_info));
}

static OptResult opt_info_go(NbdClient *c, uint32_t opt, const uint8_t *data,
                             uint32_t len)
{
    uint32_t namelen, pos = 0;
    uint16_t nreq;
    bool want_name = false, want_desc = false;
    g_autofree char *name = NULL;
    NbdExport *exp;

    name = take_string(data, len, &pos, &namelen);
    if (!name || len - pos < 2) {
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "%s: malformed request", nbd_opt_name(opt));
    }
    nreq = ldw_be(data + pos);
    pos += 2;
    if (len - pos != 2u * nreq) {
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "%s: %u information requests do not match the "
                         "length %u", nbd_opt_name(opt), nreq, len);
    }
    if (namelen > NBD_MAX_STRING_SIZE || strlen(name) != namelen) {
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "%s: invalid export name", nbd_opt_name(opt));
    }
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t type = ldw_be(data + pos + 2 * i);
        want_name |= type == NBD_INFO_NAME;
        want_desc |= type == NBD_INFO_DESCRIPTION;
    }
    exp = nbd_export_lookup(name);
    if (!exp) {
        return opt_error(c, opt, NBD_REP_ERR_UNKNOWN,
                         "export '%s' not present", name);
    }
    if (send_export_infos(c, opt, exp, want_name, want_desc) < 0) {
        nbd_export_unref(exp);
        return OPT_CLOSE;
    }
    if (opt == NBD_OPT_INFO) {
        nbd_export_unref(exp);
        return opt_ack(c, opt);
    }
    if (!choose_export(c, exp)) {
        return opt_error(c, opt, NBD_REP_ERR_SHUTDOWN,
                         "export '%s' is shutting down", name);
    }
    if (opt_reply(c, opt, NBD_REP_ACK, NULL, 0) < 0) {
        return OPT_CLOSE;
    }
    return OPT_GO;
}

static OptResult opt_structured(NbdClient *c, uint32_t opt, uint32_t len)
{
    if (len != 0) {
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "NBD_OPT_STRUCTURED_REPLY takes no data");
    }
    if (c->structured) {
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "structured reply already negotiated");
    }
    c->structured = true;
    return opt_ack(c, opt);
}

static int send_contexts(NbdClient *c, uint32_t opt, NbdExport *exp,
                         const bool *selected, bool list)
{
    for (unsigned i = 0; i < exp->n_contexts; i++) {
        const char *name = exp->contexts[i].name;
        size_t nlen = strlen(name);
        g_autofree uint8_t *buf = NULL;

        if (!selected[i]) {
            continue;
        }
        buf = g_malloc(4 + nlen);
        stl_be(buf, list ? 0 : i);
        memcpy(buf + 4, name, nlen);
        if (opt_reply(c, opt, NBD_REP_META_CONTEXT, buf,
                      (uint32_t)(4 + nlen)) < 0) {
            return -EIO;
        }
    }
    return 0;
}

static OptResult opt_meta_context(NbdClient *c, uint32_t opt,
                                  const uint8_t *data, uint32_t len)
{
    bool list = opt == NBD_OPT_LIST_META_CONTEXT;
    uint32_t namelen, nq, pos = 0;
    g_autofree char *name = NULL;
    g_autofree bool *selected = NULL;
    NbdExport *exp;

    if (!list) {
        clear_meta(c);     /* SET replaces the selection, even on error */
    }
    if (!c->structured) {
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "request option '%s' when structured reply is not "
                         "negotiated", nbd_opt_name(opt));
    }
    name = take_string(data, len, &pos, &namelen);
    if (!name || len - pos < 4) {
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "%s: malformed request", nbd_opt_name(opt));
    }
    nq = ldl_be(data + pos);
    pos += 4;
    exp = nbd_export_lookup(name);
    if (!exp) {
        return opt_error(c, opt, NBD_REP_ERR_UNKNOWN,
                         "export '%s' not present", name);
    }
    selected = g_new0(bool, exp->n_contexts);
    if (nq == 0 && list) {
        for (unsigned i = 0; i < exp->n_contexts; i++) {
            selected[i] = true;
        }
    }
    for (uint32_t q = 0; q < nq; q++) {
        uint32_t qlen;
        g_autofree char *query = take_string(data, len, &pos, &qlen);

        if (!query) {
            nbd_export_unref(exp);
            return opt_error(c, opt, NBD_REP_ERR_INVALID,
                             "%s: query %u exceeds the option length",
                             nbd_opt_name(opt), q);
        }
        nbd_meta_match(exp, query, qlen, list, selected);
    }
    if (pos != len) {
        nbd_export_unref(exp);
        return opt_error(c, opt, NBD_REP_ERR_INVALID,
                         "%s: %u bytes of trailing data", nbd_opt_name(opt),
                         len - pos);
    }
    if (send_contexts(c, opt, exp, selected, list) < 0) {
        nbd_export_unref(exp);
        return OPT_CLOSE;
    }
    if (list) {
        nbd_export_unref(exp);
    } else {
        c->meta_exp = exp;
        c->meta_selected = g_steal_pointer(&selected);
        for (unsigned i = 0; i < exp->n_contexts; i++) {
            c->n_meta_selected += c->meta_selected[i];
        }
    }
    return opt_ack(c, opt);
}

/* ---- The option loop ---------------------------------------------------- */

static OptResult handle_option(NbdClient *c, uint32_t opt, uint32_t len)
{
    g_autofree uint8_t *data = NULL;

    if (opt == NBD_OPT_EXPORT_NAME && len > NBD_MAX_STRING_SIZE) {
        nbd_client_log(c, "export name of %u bytes, closing", len);
        return OPT_CLOSE;
    }
    if (len > NBD_MAX_OPTION_LENGTH) {
        if (len > NBD_OPTION_DRAIN_LIMIT) {
            nbd_client_log(c, "option %u with %u bytes of data, closing",
                           opt, len);
            return OPT_CLOSE;
        }
        if (nbd_chan_skip(c, len) < 0) {
            return OPT_CLOSE;
        }
        return opt_error(c, opt, NBD_REP_ERR_TOO_BIG,
                         "option data of %u bytes is too long", len);
    }
    data = g_malloc(len + 1);
    if (nbd_chan_read(c, data, len) < 0) {
        return OPT_CLOSE;
    }
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        return opt_export_name(c, data, len);
    case NBD_OPT_ABORT:
        opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
        return OPT_CLOSE;
    case NBD_OPT_LIST:
        return opt_list(c, opt, len);
    case NBD_OPT_STARTTLS:
        return opt_error(c, opt, NBD_REP_ERR_POLICY, "TLS not configured");
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info_go(c, opt, data, len);
    case NBD_OPT_STRUCTURED_REPLY:
        return opt_structured(c, opt, len);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return opt_meta_context(c, opt, data, len);
    default:
        return opt_error(c, opt, NBD_REP_ERR_UNSUP,
                         "Unsupported option %u (%s)", opt,
                         nbd_opt_name(opt));
    }
}

static bool greet(NbdClient *c)
{
    uint8_t hello[18];
    uint8_t cflags[4];
    uint32_t flags;

    stq_be(hello, NBD_INIT_MAGIC);
    stq_be(hello + 8, NBD_OPTS_MAGIC);
    stw_be(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    if (nbd_chan_write(c, hello, sizeof(hello)) < 0 ||
        nbd_chan_read(c, cflags, sizeof(cflags)) < 0) {
        return false;
    }
    flags = ldl_be(cflags);
    if (flags & ~NBD_FLAG_C_MASK) {
        nbd_client_log(c, "unknown client flags 0x%x, closing", flags);
        return false;
    }
    c->fixed_newstyle = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
    c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    return true;
}

NbdHandshakeResult nbd_handshake(NbdClient *c)
{
    if (!greet(c)) {
        return NBD_HS_CLOSE;
    }
    for (;;) {
        uint8_t hdr[16];
        uint32_t opt, len;
        OptResult r;

        if (nbd_chan_read(c, hdr, sizeof(hdr)) < 0) {
            return NBD_HS_CLOSE;
        }
        if (ldq_be(hdr) != NBD_OPTS_MAGIC) {
            nbd_client_log(c, "bad option magic, closing");
            return NBD_HS_CLOSE;
        }
        opt = ldl_be(hdr + 8);
        len = ldl_be(hdr + 12);
        if (++c->n_options > NBD_MAX_OPTIONS) {
            nbd_client_log(c, "more than %d options, closing",
                           NBD_MAX_OPTIONS);
            return NBD_HS_CLOSE;
        }
        if (!c->fixed_newstyle && opt != NBD_OPT_EXPORT_NAME) {
            nbd_client_log(c, "option %u without fixed newstyle, closing",
                           opt);
            return NBD_HS_CLOSE;
        }
        r = handle_option(c, opt, len);
        if (r == OPT_GO) {
            return NBD_HS_TRANSMISSION;
        }
        if (r == OPT_CLOSE) {
            return NBD_HS_CLOSE;
        }
    }
}
