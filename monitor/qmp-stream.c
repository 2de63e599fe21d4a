/*
 * Incremental JSON framing (see include/monitor/qmp-stream.h): a byte-at-a
 * -time lexer that knows where each top-level value ends, validates every
 * token strictly and enforces the limits, then lets json-glib build the
 * tree from the (already lexically valid) text.
 */
#include "monitor/qmp-stream.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "qapi/error.h"
#include "qapi/qobject-json.h"

typedef enum {
    ST_TOP,         /* between top-level values */
    ST_GARBAGE,     /* inside a run of stray bytes at top level */
    ST_VALUE,       /* inside a container, between tokens */
    ST_STRING,      /* inside a string */
    ST_ESCAPE,      /* after a backslash in a string */
    ST_UNICODE,     /* inside \uXXXX */
    ST_NUMBER,
    ST_KEYWORD,
} LexState;

typedef enum {
    NUM_MINUS, NUM_ZERO, NUM_INT, NUM_DOT, NUM_FRAC, NUM_E, NUM_ESIGN,
    NUM_EXP,
} NumState;

struct QmpStream {
    QmpStreamEmitFunc *emit;
    void *opaque;
    size_t max_size;
    unsigned max_depth;
    size_t max_tokens;

    LexState state;
    GString *buf;           /* text of the current value */
    bool discarding;        /* a limit was hit: lex on, but keep nothing */
    const char *limit_msg;  /* which limit */
    guint64 depth;
    size_t tokens;
    size_t colons;          /* ':' seen = object members in the value */

    /* string state */
    char quote;             /* '"' or '\'' */
    unsigned utf8_need;     /* continuation bytes still expected */
    gunichar utf8_cp;
    gunichar utf8_min;
    unsigned hex_count;
    gunichar hex_cp;
    bool want_low_surrogate;

    /* number / keyword state */
    NumState num;
    bool num_is_int;
    size_t tok_start;       /* offset of the token in buf */
    char kw[8];
    unsigned kw_len;

    /* garbage run */
    unsigned char stray;
};

QmpStream *qmp_stream_new(QmpStreamEmitFunc *emit, void *opaque)
{
    QmpStream *s = g_new0(QmpStream, 1);

    s->emit = emit;
    s->opaque = opaque;
    s->max_size = QMP_JSON_MAX_SIZE;
    s->max_depth = QMP_JSON_MAX_DEPTH;
    s->max_tokens = QMP_JSON_MAX_TOKENS;
    s->buf = g_string_new(NULL);
    return s;
}

void qmp_stream_free(QmpStream *s)
{
    if (s) {
        g_string_free(s->buf, TRUE);
        g_free(s);
    }
}

void qmp_stream_set_limits(QmpStream *s, size_t max_size, unsigned max_depth,
                           size_t max_tokens)
{
    s->max_size = max_size ? max_size : s->max_size;
    s->max_depth = max_depth ? max_depth : s->max_depth;
    s->max_tokens = max_tokens ? max_tokens : s->max_tokens;
}

static void clear_value(QmpStream *s)
{
    if (s->buf->allocated_len > 65536) {
        g_string_free(s->buf, TRUE);
        s->buf = g_string_new(NULL);
    } else {
        g_string_truncate(s->buf, 0);
    }
    s->discarding = false;
    s->limit_msg = NULL;
    s->depth = 0;
    s->tokens = 0;
    s->colons = 0;
    s->want_low_surrogate = false;
    s->utf8_need = 0;
}

void qmp_stream_reset(QmpStream *s)
{
    clear_value(s);
    s->state = ST_TOP;
}

bool qmp_stream_idle(const QmpStream *s)
{
    return s->state == ST_TOP;
}

static void emit_error(QmpStream *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void emit_error(QmpStream *s, const char *fmt, ...)
{
    GError *err = NULL;
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(&err, BP_ERROR, ERROR_CLASS_GENERIC_ERROR, msg);
    g_free(msg);
    s->emit(s->opaque, NULL, err);
}

/* A byte that is invalid where it stands: report and restart. */
static void lex_error(QmpStream *s, const char *what, unsigned char c)
{
    if (s->discarding) {
        emit_error(s, "%s", s->limit_msg);
    } else if (what) {
        emit_error(s, "JSON parse error, %s", what);
    } else if (c >= 0x20 && c < 0x7f) {
        emit_error(s, "JSON parse error, stray '%c'", c);
    } else {
        emit_error(s, "JSON parse error, stray '\\x%02x'", c);
    }
    qmp_stream_reset(s);
}

static void hit_limit(QmpStream *s, const char *msg)
{
    if (!s->discarding) {
        s->discarding = true;
        s->limit_msg = msg;
        g_string_free(s->buf, TRUE);
        s->buf = g_string_new(NULL);
    }
}

static void put(QmpStream *s, const char *bytes, size_t n)
{
    if (s->discarding) {
        return;
    }
    if (s->buf->len + n > s->max_size) {
        hit_limit(s, "JSON message size limit exceeded");
        return;
    }
    g_string_append_len(s->buf, bytes, n);
}

static void putc_(QmpStream *s, char c)
{
    put(s, &c, 1);
}

static void count_token(QmpStream *s)
{
    if (++s->tokens > s->max_tokens) {
        hit_limit(s, "JSON token count limit exceeded");
    }
}

/* Strip json-glib's "<data>:1:5: Parse error: " prefix. */
static const char *glib_reason(const char *msg)
{
    const char *p = strstr(msg, "Parse error: ");

    return p ? p + strlen("Parse error: ") : msg;
}

static void value_complete(QmpStream *s)
{
    g_autoptr(JsonParser) parser = NULL;
    g_autoptr(GError) perr = NULL;
    JsonNode *root;

    if (s->discarding) {
        emit_error(s, "%s", s->limit_msg);
        qmp_stream_reset(s);
        return;
    }
    parser = json_parser_new();
    if (!json_parser_load_from_data(parser, s->buf->str, s->buf->len,
                                    &perr)) {
        emit_error(s, "JSON parse error, %s", glib_reason(perr->message));
        qmp_stream_reset(s);
        return;
    }
    root = json_parser_steal_root(parser);
    if (!root) {
        emit_error(s, "JSON parse error, expecting value");
        qmp_stream_reset(s);
        return;
    }
    if (qobj_count_members(root) != s->colons) {
        json_node_unref(root);
        emit_error(s, "JSON parse error, duplicate key");
        qmp_stream_reset(s);
        return;
    }
    qmp_stream_reset(s);
    s->emit(s->opaque, root, NULL);
}

/* After a token or closing bracket: is the whole value done? */
static void token_done(QmpStream *s)
{
    if (s->depth == 0) {
        value_complete(s);
    } else {
        s->state = ST_VALUE;
    }
}

static void start_container(QmpStream *s, char c)
{
    count_token(s);
    if (++s->depth > s->max_depth) {
        hit_limit(s, "JSON nesting depth limit exceeded");
    }
    putc_(s, c);
    s->state = ST_VALUE;
}

static void start_string(QmpStream *s, char quote)
{
    count_token(s);
    s->quote = quote;
    putc_(s, '"');
    s->state = ST_STRING;
}

static void start_number(QmpStream *s, char c)
{
    count_token(s);
    s->tok_start = s->buf->len;
    s->num = c == '-' ? NUM_MINUS : c == '0' ? NUM_ZERO : NUM_INT;
    s->num_is_int = true;
    putc_(s, c);
    s->state = ST_NUMBER;
}

static void start_keyword(QmpStream *s, char c)
{
    count_token(s);
    s->kw[0] = c;
    s->kw_len = 1;
    s->state = ST_KEYWORD;
}

/* Dispatch a byte that starts a value; false if it cannot. */
static bool start_value(QmpStream *s, unsigned char c)
{
    if (c == '{' || c == '[') {
        start_container(s, c);
    } else if (c == '"' || c == '\'') {
        start_string(s, c);
    } else if (c == '-' || g_ascii_isdigit(c)) {
        start_number(s, c);
    } else if (c >= 'a' && c <= 'z') {
        start_keyword(s, c);
    } else {
        return false;
    }
    return true;
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Returns false when the byte must be looked at again in the new state. */
static bool lex_number(QmpStream *s, unsigned char c)
{
    bool digit = g_ascii_isdigit(c);
    NumState n = s->num;

    if (digit) {
        if (n == NUM_ZERO) {
            lex_error(s, "leading zero in number", c);
            return true;
        }
        s->num = n == NUM_MINUS ? (c == '0' ? NUM_ZERO : NUM_INT) :
                 n == NUM_DOT ? NUM_FRAC :
                 (n == NUM_E || n == NUM_ESIGN) ? NUM_EXP : n;
        putc_(s, c);
        return true;
    }
    if (c == '.' && (n == NUM_ZERO || n == NUM_INT)) {
        s->num = NUM_DOT;
        s->num_is_int = false;
        putc_(s, c);
        return true;
    }
    if ((c == 'e' || c == 'E') &&
        (n == NUM_ZERO || n == NUM_INT || n == NUM_FRAC)) {
        s->num = NUM_E;
        s->num_is_int = false;
        putc_(s, c);
        return true;
    }
    if ((c == '+' || c == '-') && n == NUM_E) {
        s->num = NUM_ESIGN;
        putc_(s, c);
        return true;
    }
    if (n != NUM_ZERO && n != NUM_INT && n != NUM_FRAC && n != NUM_EXP) {
        lex_error(s, "incomplete number", c);
        return true;
    }
    /* The number ended before @c: check its value. */
    if (!s->discarding) {
        const char *tok = s->buf->str + s->tok_start;
        char *end;

        errno = 0;
        if (s->num_is_int) {
            g_ascii_strtoll(tok, &end, 10);
            if (errno == ERANGE) {
                /* Too big for int64: json-glib would wrap; keep a double. */
                put(s, ".0", 2);
            }
        } else if (isinf(g_ascii_strtod(tok, &end))) {
            lex_error(s, "number out of range", c);
            return true;
        }
    }
    token_done(s);
    return false;
}

static bool lex_keyword(QmpStream *s, unsigned char c)
{
    if (c >= 'a' && c <= 'z') {
        if (s->kw_len >= 5) {
            s->kw[s->kw_len] = 0;
            lex_error(s, "invalid keyword", c);
            return true;
        }
        s->kw[s->kw_len++] = c;
        return true;
    }
    s->kw[s->kw_len] = 0;
    if (strcmp(s->kw, "true") && strcmp(s->kw, "false") &&
        strcmp(s->kw, "null")) {
        g_autofree char *msg = g_strdup_printf("invalid keyword '%s'", s->kw);

        lex_error(s, msg, c);
        return true;
    }
    put(s, s->kw, s->kw_len);
    token_done(s);
    return false;
}

static void lex_utf8(QmpStream *s, unsigned char c)
{
    if (s->utf8_need) {
        if ((c & 0xc0) != 0x80) {
            lex_error(s, "invalid UTF-8 sequence in string", c);
            return;
        }
        s->utf8_cp = (s->utf8_cp << 6) | (c & 0x3f);
        putc_(s, c);
        if (--s->utf8_need == 0 &&
            (s->utf8_cp < s->utf8_min || s->utf8_cp > 0x10ffff ||
             (s->utf8_cp >= 0xd800 && s->utf8_cp <= 0xdfff))) {
            lex_error(s, "invalid UTF-8 sequence in string", c);
        }
        return;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        s->utf8_need = 1;
        s->utf8_cp = c & 0x1f;
        s->utf8_min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        s->utf8_need = 2;
        s->utf8_cp = c & 0x0f;
        s->utf8_min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        s->utf8_need = 3;
        s->utf8_cp = c & 0x07;
        s->utf8_min = 0x10000;
    } else {
        lex_error(s, "invalid UTF-8 sequence in string", c);
        return;
    }
    putc_(s, c);
}

static void lex_string(QmpStream *s, unsigned char c)
{
    if (s->utf8_need || c >= 0x80) {
        if (s->want_low_surrogate) {
            lex_error(s, "missing low surrogate in string", c);
            return;
        }
        lex_utf8(s, c);
        return;
    }
    if (s->want_low_surrogate && c != '\\') {
        lex_error(s, "missing low surrogate in string", c);
        return;
    }
    if (c == (unsigned char)s->quote) {
        putc_(s, '"');
        token_done(s);
    } else if (c == '\\') {
        s->state = ST_ESCAPE;
    } else if (c < 0x20) {
        lex_error(s, "control character in string", c);
    } else if (c == '"') {
        put(s, "\\\"", 2);      /* inside a 'single-quoted' string */
    } else {
        putc_(s, c);
    }
}

static void lex_escape(QmpStream *s, unsigned char c)
{
    static const char simple[] = "\"\\/bfnrt";

    if (s->want_low_surrogate && c != 'u') {
        lex_error(s, "missing low surrogate in string", c);
        return;
    }
    if (c == 'u') {
        s->hex_count = 0;
        s->hex_cp = 0;
        s->state = ST_UNICODE;
        return;
    }
    if (c == '\'') {
        putc_(s, '\'');
    } else if (c && strchr(simple, c)) {
        putc_(s, '\\');
        putc_(s, c);
    } else {
        lex_error(s, "invalid escape sequence in string", c);
        return;
    }
    s->state = ST_STRING;
}

static void lex_unicode(QmpStream *s, unsigned char c)
{
    char esc[8];

    if (!g_ascii_isxdigit(c)) {
        lex_error(s, "invalid escape sequence in string", c);
        return;
    }
    s->hex_cp = (s->hex_cp << 4) | g_ascii_xdigit_value(c);
    if (++s->hex_count < 4) {
        return;
    }
    if (s->hex_cp == 0) {
        lex_error(s, "\\u0000 is not supported in strings", c);
        return;
    }
    if (s->want_low_surrogate != (s->hex_cp >= 0xdc00 &&
                                  s->hex_cp <= 0xdfff)) {
        lex_error(s, "invalid surrogate pair in string", c);
        return;
    }
    s->want_low_surrogate = s->hex_cp >= 0xd800 && s->hex_cp <= 0xdbff;
    g_snprintf(esc, sizeof(esc), "\\u%04x", s->hex_cp);
    put(s, esc, 6);
    s->state = ST_STRING;
}

static void lex_value(QmpStream *s, unsigned char c)
{
    if (is_ws(c)) {
        putc_(s, c);
    } else if (c == '}' || c == ']') {
        putc_(s, c);
        s->depth--;
        token_done(s);
    } else if (c == ',' || c == ':') {
        s->colons += c == ':';
        putc_(s, c);
    } else if (!start_value(s, c)) {
        lex_error(s, NULL, c);
    }
}

static void end_garbage(QmpStream *s)
{
    unsigned char c = s->stray;

    s->state = ST_TOP;
    if (c >= 0x20 && c < 0x7f) {
        emit_error(s, "JSON parse error, stray '%c'", c);
    } else {
        emit_error(s, "JSON parse error, stray '\\x%02x'", c);
    }
}

static void lex_byte(QmpStream *s, unsigned char c)
{
    for (;;) {
        switch (s->state) {
        case ST_TOP:
            if (!is_ws(c) && !start_value(s, c)) {
                s->stray = c;
                s->state = ST_GARBAGE;
            }
            return;
        case ST_GARBAGE:
            if (is_ws(c) || c == '{' || c == '[' || c == '"' || c == '\'') {
                end_garbage(s);
                continue;
            }
            return;
        case ST_VALUE:
            lex_value(s, c);
            return;
        case ST_STRING:
            lex_string(s, c);
            return;
        case ST_ESCAPE:
            lex_escape(s, c);
            return;
        case ST_UNICODE:
            lex_unicode(s, c);
            return;
        case ST_NUMBER:
            if (lex_number(s, c)) {
                return;
            }
            continue;
        case ST_KEYWORD:
            if (lex_keyword(s, c)) {
                return;
            }
            continue;
        }
    }
}

void qmp_stream_feed(QmpStream *s, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    for (size_t i = 0; i < len; i++) {
        lex_byte(s, p[i]);
    }
}

void qmp_stream_finish(QmpStream *s)
{
    switch (s->state) {
    case ST_TOP:
        return;
    case ST_GARBAGE:
        end_garbage(s);
        return;
    case ST_NUMBER:
    case ST_KEYWORD:
        if (s->depth == 0) {
            /* A space ends the token and, at top level, the value. */
            lex_byte(s, ' ');
            if (s->state == ST_TOP) {
                return;
            }
        }
        break;
    default:
        break;
    }
    if (s->discarding) {
        emit_error(s, "%s", s->limit_msg);
    } else {
        emit_error(s, "JSON parse error, unexpected end of input");
    }
    qmp_stream_reset(s);
}

typedef struct ParseOne {
    JsonNode *value;
    GError *err;
    unsigned count;
} ParseOne;

static void parse_one_emit(void *opaque, JsonNode *value, GError *err)
{
    ParseOne *p = opaque;

    if (++p->count == 1) {
        p->value = value;
        p->err = err;
        return;
    }
    if (value) {
        json_node_unref(value);
    }
    if (err) {
        g_error_free(err);
    }
}

JsonNode *qmp_json_parse(const char *text, size_t len, GError **errp)
{
    QmpStream *s;
    ParseOne p = { 0 };

    s = qmp_stream_new(parse_one_emit, &p);
    qmp_stream_feed(s, text, len);
    qmp_stream_finish(s);
    qmp_stream_free(s);
    if (p.err) {
        if (p.value) {
            json_node_unref(p.value);
        }
        g_propagate_error(errp, p.err);
        return NULL;
    }
    if (p.count == 0) {
        error_setg(errp, "JSON parse error, expecting value");
        return NULL;
    }
    if (p.count > 1) {
        json_node_unref(p.value);
        error_setg(errp, "JSON parse error, garbage after the value");
        return NULL;
    }
    return p.value;
}
