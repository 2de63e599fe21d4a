/* Dotted-key and JSON option parsing, and the take/check accessors. */
#include "util/options.h"
#include "qapi/error.h"

static char *to_json(JsonObject *o)
{
    g_autoptr(JsonNode) n = json_node_new(JSON_NODE_OBJECT);
    json_node_set_object(n, o);
    return json_to_string(n, FALSE);
}

static void test_keyval_nested(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse(
        "driver=raw,file.driver=file,file.filename=/tmp/a,,b", NULL, &err);
    g_autofree char *s = NULL;

    g_assert_no_error(err);
    s = to_json(o);
    g_assert_cmpstr(s, ==, "{\"driver\":\"raw\",\"file\":{\"driver\":\"file\","
                           "\"filename\":\"/tmp/a,b\"}}");
}

static void test_keyval_implied(void)
{
    g_autoptr(JsonObject) o = keyval_parse("foo.img,read-only=on", "file",
                                           NULL);
    g_assert_nonnull(o);
    g_assert_cmpstr(json_object_get_string_member(o, "file"), ==, "foo.img");
}

static void test_keyval_errors(void)
{
    g_autoptr(GError) e1 = NULL;
    g_autoptr(GError) e2 = NULL;
    g_autoptr(GError) e3 = NULL;

    g_assert_null(keyval_parse("novalue", NULL, &e1));
    g_assert_nonnull(e1);
    g_assert_null(keyval_parse("a=1,a.b=2", NULL, &e2));
    g_assert_nonnull(e2);
    g_assert_null(keyval_parse("a..b=1", NULL, &e3));
    g_assert_nonnull(e3);
}

static void test_take(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o =
        options_parse_json("{\"a\": true, \"b\": \"off\", \"s\": \"64k\", "
                           "\"n\": 5, \"c\": {\"x\": 1}, \"junk\": 1}",
                           &err);
    bool a, b;
    uint64_t s, n;
    g_autoptr(JsonObject) c = NULL;
    g_autofree char *left = NULL;

    g_assert_no_error(err);
    g_assert_true(opts_take_bool(o, "a", false, &a, NULL));
    g_assert_true(a);
    g_assert_true(opts_take_bool(o, "b", true, &b, NULL));
    g_assert_false(b);
    g_assert_true(opts_take_size(o, "s", 0, &s, NULL));
    g_assert_cmpuint(s, ==, 65536);
    g_assert_true(opts_take_size(o, "n", 0, &n, NULL));
    g_assert_cmpuint(n, ==, 5);
    c = opts_take_object(o, "c");
    g_assert_nonnull(c);
    left = opts_first_key(o);
    g_assert_cmpstr(left, ==, "junk");
    g_assert_false(opts_check_empty(o, "Thing", &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==,
                    "Thing does not support the option 'junk'");
}

static void test_take_bad_types(void)
{
    g_autoptr(JsonObject) o =
        options_parse_json("{\"b\": \"maybe\", \"s\": \"1Q\", \"o\": {}}",
                           NULL);
    g_autoptr(GError) e1 = NULL;
    g_autoptr(GError) e2 = NULL;
    g_autoptr(GError) e3 = NULL;
    bool b;
    uint64_t s;

    g_assert_false(opts_take_bool(o, "b", false, &b, &e1));
    g_assert_nonnull(e1);
    g_assert_false(opts_take_size(o, "s", 0, &s, &e2));
    g_assert_nonnull(e2);
    g_assert_null(opts_take_str(o, "o", &e3));
    g_assert_nonnull(e3);
}

static void test_json_not_object(void)
{
    g_autoptr(GError) err = NULL;
    g_assert_null(options_parse_json("[1]", &err));
    g_assert_nonnull(err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/options/keyval/nested", test_keyval_nested);
    g_test_add_func("/options/keyval/implied", test_keyval_implied);
    g_test_add_func("/options/keyval/errors", test_keyval_errors);
    g_test_add_func("/options/take", test_take);
    g_test_add_func("/options/take-bad-types", test_take_bad_types);
    g_test_add_func("/options/json-not-object", test_json_not_object);
    return g_test_run();
}
