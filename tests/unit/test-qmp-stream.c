/*
 * Unit tests for the QMP JSON framer (monitor/qmp-stream.c): framing of
 * split, concatenated and garbage input, strictness, limits and resync.
 */
#include <string.h>

#include <glib.h>

#include "monitor/qmp-stream.h"
#include "qapi/qobject-json.h"

/* Each emitted item as "V:<json>" or "E:<message>". */
static void collect(void *opaque, JsonNode *value, GError *err)
{
    GPtrArray *out = opaque;

    if (value) {
        g_autofree char *s = qobj_to_json(value, false);

        g_ptr_array_add(out, g_strconcat("V:", s, NULL));
        json_node_unref(value);
    } else {
        g_ptr_array_add(out, g_strconcat("E:", err->message, NULL));
        g_error_free(err);
    }
}

/* Feed @len bytes in pieces of @chunk bytes; returns the items. */
static GPtrArray *run_chunked(const char *in, size_t len, size_t chunk,
                              bool finish)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    QmpStream *s = qmp_stream_new(collect, out);

    for (size_t i = 0; i < len; i += chunk) {
        qmp_stream_feed(s, in + i, MIN(chunk, len - i));
    }
    if (finish) {
        qmp_stream_finish(s);
    }
    qmp_stream_free(s);
    return out;
}

static GPtrArray *run(const char *in)
{
    return run_chunked(in, strlen(in), strlen(in) + 1, true);
}

/* Check the items against a NULL-terminated list of expectations; an
 * expectation ending in '*' is a prefix. */
static void check_items(GPtrArray *got, const char *const *want)
{
    guint n = g_strv_length((char **)want);

    for (guint i = 0; i < got->len; i++) {
        g_test_message("item %u: %s", i, (char *)got->pdata[i]);
    }
    g_assert_cmpuint(got->len, ==, n);
    for (guint i = 0; i < n; i++) {
        size_t wl = strlen(want[i]);

        if (wl && want[i][wl - 1] == '*') {
            g_assert_cmpint(strncmp(got->pdata[i], want[i], wl - 1), ==, 0);
        } else {
            g_assert_cmpstr(got->pdata[i], ==, want[i]);
        }
    }
}

#define CHECK(in, ...) do { \
        const char *const want_[] = { __VA_ARGS__, NULL }; \
        g_autoptr(GPtrArray) got_ = run(in); \
        check_items(got_, want_); \
    } while (0)

/* Only the first item matters: what follows depends on resync details. */
#define CHECK_FIRST(in, want) do { \
        g_autoptr(GPtrArray) got_ = run(in); \
        size_t wl_ = strlen(want); \
        g_assert_cmpuint(got_->len, >=, 1); \
        if ((want)[wl_ - 1] == '*') { \
            g_assert_cmpint(strncmp(got_->pdata[0], want, wl_ - 1), ==, 0); \
        } else { \
            g_assert_cmpstr(got_->pdata[0], ==, want); \
        } \
    } while (0)

static void test_simple(void)
{
    CHECK("{\"execute\": \"x\"}", "V:{\"execute\": \"x\"}");
    CHECK("  [1, 2.5, \"a\", true, false, null, {}] ",
          "V:[1, 2.5, \"a\", true, false, null, {}]");
    CHECK("{}{}[]", "V:{}", "V:{}", "V:[]");
    CHECK("1 \"s\" true null -0.5e1 ", "V:1", "V:\"s\"", "V:true",
          "V:null", "V:-5");
    CHECK("", NULL);
}

static void test_split_every_byte(void)
{
    const char *in = "{\"a\": [1, {\"b\": \"c\\u00e9\\ud83d\\ude00\"}], "
                     "\"n\": -12.5e-3}\n{'x': 'y\\'z\"'}";
    g_autoptr(GPtrArray) whole = run(in);

    g_assert_cmpuint(whole->len, ==, 2);
    for (size_t chunk = 1; chunk < 8; chunk++) {
        g_autoptr(GPtrArray) got = run_chunked(in, strlen(in), chunk, true);

        g_assert_cmpuint(got->len, ==, 2);
        for (guint i = 0; i < 2; i++) {
            g_assert_cmpstr(got->pdata[i], ==, whole->pdata[i]);
        }
    }
    g_assert_cmpstr(whole->pdata[1], ==, "V:{\"x\": \"y'z\\\"\"}");
}

static void test_garbage_runs(void)
{
    CHECK("}}} {\"a\": 1}", "E:JSON parse error, stray '}'",
          "V:{\"a\": 1}");
    CHECK("\x01\n", "E:JSON parse error, stray '\\x01'");
    CHECK("\xff\xff\xff{}", "E:JSON parse error, stray '\\xff'", "V:{}");
    CHECK(",:,:\n[]", "E:JSON parse error, stray ','", "V:[]");
}

static void test_resync_inside_value(void)
{
    CHECK("{\"a\": 1 /* c */}\n\xff\n{\"b\": 2}",
          "E:JSON parse error, stray '/'", "E:*", "E:*", "E:*", "E:*",
          "V:{\"b\": 2}");
    CHECK("{\"a\": \"x\xff\"}\n{\"ok\": 1}", "E:*", "E:*",
          "V:{\"ok\": 1}");
}

static void test_strict_tokens(void)
{
    CHECK_FIRST("[01]", "E:JSON parse error, leading zero in number");
    /* Like QEMU, lexing restarts after the error: "5" is a value. */
    CHECK("[.5]", "E:JSON parse error, stray '.'", "V:5",
          "E:JSON parse error, stray ']'");
    CHECK_FIRST("[1.]", "E:JSON parse error, incomplete number");
    CHECK_FIRST("[1e]", "E:JSON parse error, incomplete number");
    CHECK_FIRST("[-]", "E:JSON parse error, incomplete number");
    CHECK_FIRST("[0x10]", "E:JSON parse error, invalid keyword 'x'");
    CHECK_FIRST("[NaN]", "E:JSON parse error, stray 'N'");
    CHECK_FIRST("[tru]", "E:JSON parse error, invalid keyword 'tru'");
    CHECK_FIRST("[truest]", "E:JSON parse error, invalid keyword");
    CHECK_FIRST("[1e999]", "E:JSON parse error, number out of range");
    CHECK_FIRST("[\"\\x\"]",
                "E:JSON parse error, invalid escape sequence in string");
    CHECK_FIRST("[\"a\tb\"]",
                "E:JSON parse error, control character in string");
    CHECK_FIRST("[\"\\u0000\"]",
                "E:JSON parse error, \\u0000 is not supported in strings");
    CHECK_FIRST("[\"\\ud800\"]",
                "E:JSON parse error, missing low surrogate in string");
    CHECK_FIRST("[\"\\udc00\"]",
                "E:JSON parse error, invalid surrogate pair in string");
    CHECK_FIRST("[\"\xc0\x80\"]",
                "E:JSON parse error, invalid UTF-8 sequence in string");
    CHECK_FIRST("[\"\xed\xa0\x80\"]",
                "E:JSON parse error, invalid UTF-8 sequence in string");
    CHECK_FIRST("[1,]", "E:JSON parse error*");
    CHECK_FIRST("{\"a\" 1}", "E:JSON parse error*");
    CHECK_FIRST("[1 2]", "E:JSON parse error*");
    CHECK("{\"a\": 1, \"a\": 2}", "E:JSON parse error, duplicate key");
    CHECK("{\"a\": {\"b\": 1, \"b\": 1}}",
          "E:JSON parse error, duplicate key");
    CHECK("{\"a\": \"x:y\", \"b\": {\"c\": \":\"}}",
          "V:{\"a\": \"x:y\", \"b\": {\"c\": \":\"}}");
}

static void test_numbers(void)
{
    CHECK("[9223372036854775807, -9223372036854775808]",
          "V:[9223372036854775807, -9223372036854775808]");
    CHECK("[9223372036854775808]", "V:[9.2233720368547758e+18]");
    CHECK("[0, -0, 1.0, 1E2, 0.1, 1e-400]",
          "V:[0, 0, 1, 100, 0.10000000000000001, 0]");
}

static void test_strings(void)
{
    CHECK("[\"\\u00e9\xc3\xa9\\ud83d\\ude00\xf0\x9f\x98\x80\\/\"]",
          "V:[\"\\u00E9\\u00E9\\uD83D\\uDE00\\uD83D\\uDE00/\"]");
    CHECK("['single \"quoted\"', 'it\\'s']",
          "V:[\"single \\\"quoted\\\"\", \"it's\"]");
    CHECK("[\"\\b\\f\\n\\r\\t\\\"\\\\\"]",
          "V:[\"\\b\\f\\n\\r\\t\\\"\\\\\"]");
}

static void test_finish(void)
{
    CHECK("42", "V:42");
    CHECK("fals", "E:JSON parse error, invalid keyword 'fals'");
    CHECK("{\"a\": [1", "E:JSON parse error, unexpected end of input");
    CHECK("\"abc", "E:JSON parse error, unexpected end of input");
    CHECK("@@", "E:JSON parse error, stray '@'");
}

static void test_limits(void)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    QmpStream *s = qmp_stream_new(collect, out);
    g_autoptr(GString) big = g_string_new("[\"");

    qmp_stream_set_limits(s, 100, 5, 20);
    g_string_append_printf(big, "%0200d\"]", 0);
    qmp_stream_feed(s, big->str, big->len);
    qmp_stream_feed(s, "[[[[[]]]]]", 10);
    qmp_stream_feed(s, "[[[[[[]]]]]]", 12);
    qmp_stream_feed(s, "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,"
                    "20]", 52);
    qmp_stream_feed(s, "[1,2,3]", 7);
    /* An over-deep value that is cut by a lexical error. */
    qmp_stream_feed(s, "[[[[[[[[\x01", 9);
    qmp_stream_finish(s);
    qmp_stream_free(s);
    {
        const char *const want[] = {
            "E:JSON message size limit exceeded",
            "V:[[[[[]]]]]",
            "E:JSON nesting depth limit exceeded",
            "E:JSON token count limit exceeded",
            "V:[1, 2, 3]",
            "E:JSON nesting depth limit exceeded",
            NULL
        };
        check_items(out, want);
    }
    g_ptr_array_unref(out);
}

static void test_deep_default_limit(void)
{
    size_t depth = 200000;
    g_autofree char *in = g_malloc(depth * 2);
    g_autoptr(GPtrArray) got = NULL;

    memset(in, '[', depth);
    memset(in + depth, ']', depth);
    got = run_chunked(in, depth * 2, 4096, true);
    g_assert_cmpuint(got->len, ==, 1);
    g_assert_cmpstr(got->pdata[0], ==,
                    "E:JSON nesting depth limit exceeded");
}

static void test_parse_one(void)
{
    g_autoptr(GError) err = NULL;
    JsonNode *n;

    n = qmp_json_parse("{\"a\": 1}", 8, &err);
    g_assert_no_error(err);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(n));
    json_node_unref(n);

    n = qmp_json_parse("{} {}", 5, &err);
    g_assert_null(n);
    g_assert_nonnull(strstr(err->message, "garbage after"));
    g_clear_error(&err);

    n = qmp_json_parse("  ", 2, &err);
    g_assert_null(n);
    g_assert_nonnull(strstr(err->message, "expecting value"));
    g_clear_error(&err);

    n = qmp_json_parse("{\"a\": 01}", 9, &err);
    g_assert_null(n);
    g_assert_nonnull(strstr(err->message, "leading zero"));
}

/* Random input must never crash; a resync marker always recovers. */
static void test_fuzz(void)
{
    static const char alphabet[] = "{}[]\",:'\\ 0123456789-.eEtrufalsn"
                                   "\x00\x01\xc3\xa9\xff\n";
    GRand *rand = g_rand_new_with_seed(4242);

    for (int round = 0; round < 3000; round++) {
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
        QmpStream *s = qmp_stream_new(collect, out);
        int len = g_rand_int_range(rand, 1, 64);
        char buf[64];

        for (int i = 0; i < len; i++) {
            buf[i] = g_rand_boolean(rand) ?
                     alphabet[g_rand_int_range(rand, 0,
                                               sizeof(alphabet) - 1)] :
                     (char)g_rand_int_range(rand, 0, 256);
        }
        qmp_stream_feed(s, buf, len);
        g_ptr_array_set_size(out, 0);
        /* Close any open string, then resync and send a good value. */
        qmp_stream_feed(s, "\"\xff\n{\"ok\": true}", 15);
        g_assert_cmpuint(out->len, >=, 1);
        g_assert_cmpstr(out->pdata[out->len - 1], ==, "V:{\"ok\": true}");
        qmp_stream_free(s);
        g_ptr_array_unref(out);
    }
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qmp-stream/simple", test_simple);
    g_test_add_func("/qmp-stream/split-every-byte", test_split_every_byte);
    g_test_add_func("/qmp-stream/garbage-runs", test_garbage_runs);
    g_test_add_func("/qmp-stream/resync-inside-value",
                    test_resync_inside_value);
    g_test_add_func("/qmp-stream/strict-tokens", test_strict_tokens);
    g_test_add_func("/qmp-stream/numbers", test_numbers);
    g_test_add_func("/qmp-stream/strings", test_strings);
    g_test_add_func("/qmp-stream/finish", test_finish);
    g_test_add_func("/qmp-stream/limits", test_limits);
    g_test_add_func("/qmp-stream/deep-default-limit",
                    test_deep_default_limit);
    g_test_add_func("/qmp-stream/parse-one", test_parse_one);
    g_test_add_func("/qmp-stream/fuzz", test_fuzz);
    return g_test_run();
}
