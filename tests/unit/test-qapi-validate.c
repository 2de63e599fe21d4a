/*
 * Unit tests for the schema validator (qapi/qapi-validate.c), the keyval
 * parser (util/keyval.c) and JSON output (qapi/qobject-json.c), against
 * the schema in tests/unit/qapi-schema-test.json.
 */
#include <string.h>

#include <glib.h>

#include "monitor/qmp-stream.h"
#include "qapi/error.h"
#include "util/keyval.h"
#include "qapi/qapi-validate.h"
#include "qapi/qobject-json.h"
#include "test_qapi-types.h"

static QapiSchema *schema;

/* Validate @json against @type; NULL expected message means success. */
static void check_full(const char *type, const char *json,
                       QapiValidateFlags flags, const char *want)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) node = qmp_json_parse(json, strlen(json), &err);
    bool ok;

    g_assert_no_error(err);
    ok = qapi_validate(schema, type, node, NULL, flags, &err);
    if (!want) {
        if (err) {
            g_test_message("%s: %s", json, err->message);
        }
        g_assert_no_error(err);
        g_assert_true(ok);
    } else {
        g_assert_false(ok);
        g_assert_nonnull(err);
        g_assert_cmpstr(err->message, ==, want);
        g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    }
}

#define OK(json) check_full("q_obj_test-cmd-arg", json, 0, NULL)
#define BAD(json, msg) check_full("q_obj_test-cmd-arg", json, 0, msg)

static void test_struct_members(void)
{
    OK("{}");
    OK("{\"ints\": {}}");
    BAD("{\"x\": 1}", "Parameter 'x' is unexpected");
    BAD("{\"ints\": {\"bogus\": true}}",
        "Parameter 'ints.bogus' is unexpected");
    BAD("{\"ints\": []}",
        "Invalid parameter type for 'ints', expected: object");
    /* Schema order first: a wrong member beats a later unknown one. */
    BAD("{\"zzz\": 1, \"ints\": {\"i\": \"x\"}}",
        "Invalid parameter type for 'ints.i', expected: integer");
}

static void test_builtins(void)
{
    OK("{\"ints\": {\"i\": -5, \"i8\": -128, \"i16\": 32767, "
       "\"i32\": -2147483648, \"i64\": -9223372036854775808, \"u8\": 255, "
       "\"u16\": 65535, \"u32\": 4294967295, "
       "\"u64\": 9223372036854775807, \"sz\": 0, \"num\": 1, "
       "\"b\": false, \"s\": \"\", \"n\": null, \"a\": [{}]}}");
    OK("{\"ints\": {\"num\": 1.5e10}}");
    OK("{\"ints\": {\"a\": null}}");
    BAD("{\"ints\": {\"i\": 1.5}}",
        "Invalid parameter type for 'ints.i', expected: integer");
    BAD("{\"ints\": {\"i\": \"1\"}}",
        "Invalid parameter type for 'ints.i', expected: integer");
    BAD("{\"ints\": {\"i8\": 128}}", "Parameter 'ints.i8' expects int8_t");
    BAD("{\"ints\": {\"i8\": -129}}", "Parameter 'ints.i8' expects int8_t");
    BAD("{\"ints\": {\"i16\": 32768}}",
        "Parameter 'ints.i16' expects int16_t");
    BAD("{\"ints\": {\"i32\": 2147483648}}",
        "Parameter 'ints.i32' expects int32_t");
    BAD("{\"ints\": {\"u8\": 256}}", "Parameter 'ints.u8' expects uint8_t");
    BAD("{\"ints\": {\"u8\": -1}}", "Parameter 'ints.u8' expects uint8_t");
    BAD("{\"ints\": {\"u16\": 65536}}",
        "Parameter 'ints.u16' expects uint16_t");
    BAD("{\"ints\": {\"u32\": 4294967296}}",
        "Parameter 'ints.u32' expects uint32_t");
    BAD("{\"ints\": {\"u64\": -1}}", "Parameter 'ints.u64' expects uint64");
    BAD("{\"ints\": {\"u64\": 18446744073709551615}}",
        "Invalid parameter type for 'ints.u64', expected: integer");
    BAD("{\"ints\": {\"sz\": -1}}", "Parameter 'ints.sz' expects size");
    BAD("{\"ints\": {\"num\": \"1\"}}",
        "Invalid parameter type for 'ints.num', expected: number");
    BAD("{\"ints\": {\"b\": 1}}",
        "Invalid parameter type for 'ints.b', expected: boolean");
    BAD("{\"ints\": {\"b\": \"true\"}}",
        "Invalid parameter type for 'ints.b', expected: boolean");
    BAD("{\"ints\": {\"s\": null}}",
        "Invalid parameter type for 'ints.s', expected: string");
    BAD("{\"ints\": {\"s\": {}}}",
        "Invalid parameter type for 'ints.s', expected: string");
    BAD("{\"ints\": {\"n\": 0}}",
        "Invalid parameter type for 'ints.n', expected: null");
}

static void test_union(void)
{
    OK("{\"shape\": {\"kind\": \"red\", \"leaf\": {\"name\": \"a\"}}}");
    OK("{\"shape\": {\"kind\": \"green\", \"name\": \"n\", \"common\": 1, "
       "\"list\": [{\"name\": \"x\", \"color\": \"blue-ish\"}]}}");
    OK("{\"shape\": {\"kind\": \"blue-ish\", \"common\": 2}}");
    BAD("{\"shape\": {}}", "Parameter 'shape.kind' is missing");
    BAD("{\"shape\": {\"kind\": \"purple\"}}",
        "Parameter 'shape.kind' does not accept value 'purple'");
    BAD("{\"shape\": {\"kind\": 1}}",
        "Invalid parameter type for 'shape.kind', expected: string");
    BAD("{\"shape\": {\"kind\": \"red\"}}",
        "Parameter 'shape.leaf' is missing");
    BAD("{\"shape\": {\"kind\": \"red\", \"leaf\": {}}}",
        "Parameter 'shape.leaf.name' is missing");
    BAD("{\"shape\": {\"kind\": \"red\", \"leaf\": {\"name\": \"a\", "
        "\"color\": \"pink\"}}}",
        "Parameter 'shape.leaf.color' does not accept value 'pink'");
    BAD("{\"shape\": {\"kind\": \"blue-ish\", \"leaf\": {}}}",
        "Parameter 'shape.leaf' is unexpected");
    BAD("{\"shape\": {\"kind\": \"green\"}}",
        "Parameter 'shape.name' is missing");
    BAD("{\"shape\": {\"kind\": \"green\", \"name\": \"n\", \"list\": "
        "[{\"name\": \"x\"}, {}]}}",
        "Parameter 'shape.list[1].name' is missing");
    BAD("{\"shape\": {\"kind\": \"green\", \"name\": \"n\", \"list\": {}}}",
        "Invalid parameter type for 'shape.list', expected: array");
    BAD("{\"shape\": {\"kind\": \"red\", \"leaf\": {\"name\": \"a\"}, "
        "\"list\": []}}", "Parameter 'shape.list' is unexpected");
}

static void test_alternate(void)
{
    OK("{\"alt\": [{\"name\": \"a\"}, \"ref\", 200]}");
    OK("{\"alt\": []}");
    BAD("{\"alt\": [true]}",
        "Invalid parameter type for 'alt[0]', expected: LeafOrName");
    BAD("{\"alt\": [null]}",
        "Invalid parameter type for 'alt[0]', expected: LeafOrName");
    /* Like QEMU: a number selects the integer branch, which refuses it. */
    BAD("{\"alt\": [\"a\", 1.5]}",
        "Invalid parameter type for 'alt[1]', expected: integer");
    BAD("{\"alt\": [300]}", "Parameter 'alt[0]' expects uint8_t");
    BAD("{\"alt\": [{}]}", "Parameter 'alt[0].name' is missing");
    BAD("{\"alt\": [[]]}",
        "Invalid parameter type for 'alt[0]', expected: LeafOrName");
}

static void test_coerce(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) obj = keyval_parse(
        "ints.i=-12,ints.u8=0x10,ints.sz=2k,ints.b=on,ints.num=1.5,"
        "ints.s=123,shape.kind=red,shape.leaf.name=n,alt.0=7,alt.1=x",
        NULL, &err);
    g_autoptr(JsonNode) node = NULL;
    g_autofree char *text = NULL;

    g_assert_no_error(err);
    node = qobj_new_object(json_object_ref(obj));
    g_assert_true(qapi_validate(schema, "q_obj_test-cmd-arg", node, NULL,
                                QAPI_VALIDATE_COERCE_STRINGS, &err));
    g_assert_no_error(err);
    text = qobj_to_json(node, false);
    g_assert_cmpstr(text, ==,
                    "{\"ints\": {\"i\": -12, \"u8\": 16, \"sz\": 2048, "
                    "\"b\": true, \"num\": 1.5, \"s\": \"123\"}, "
                    "\"shape\": {\"kind\": \"red\", \"leaf\": {\"name\": "
                    "\"n\"}}, \"alt\": [\"7\", \"x\"]}");

    check_full("q_obj_test-cmd-arg", "{\"ints\": {\"i\": \"1x\"}}",
               QAPI_VALIDATE_COERCE_STRINGS,
               "Parameter 'ints.i' expects integer");
    check_full("q_obj_test-cmd-arg", "{\"ints\": {\"b\": \"maybe\"}}",
               QAPI_VALIDATE_COERCE_STRINGS,
               "Parameter 'ints.b' expects 'on' or 'off'");
    check_full("q_obj_test-cmd-arg", "{\"ints\": {\"sz\": \"1q\"}}",
               QAPI_VALIDATE_COERCE_STRINGS,
               "Parameter 'ints.sz' expects a size value");
    check_full("q_obj_test-cmd-arg", "{\"ints\": {\"sz\": \"-1\"}}",
               QAPI_VALIDATE_COERCE_STRINGS,
               "Parameter 'ints.sz' expects a size value");
    check_full("q_obj_test-cmd-arg", "{\"ints\": {\"u8\": \"256\"}}",
               QAPI_VALIDATE_COERCE_STRINGS,
               "Parameter 'ints.u8' expects uint8_t");
}

static void test_named_root_and_events(void)
{
    g_autoptr(GError) err = NULL;
    JsonObject *ev = qapi_schema_lookup(schema, "TEST_EVENT");
    g_autoptr(JsonNode) data = qmp_json_parse("{\"what\": 1}", 11, &err);

    g_assert_nonnull(ev);
    g_assert_cmpstr(json_object_get_string_member(ev, "meta-type"), ==,
                    "event");
    g_assert_false(qapi_validate(schema,
                                 json_object_get_string_member(ev,
                                                               "arg-type"),
                                 data, "data", 0, &err));
    g_assert_cmpstr(err->message, ==,
                    "Invalid parameter type for 'data.what', expected: "
                    "string");
    g_assert_null(qapi_schema_lookup(schema, "nosuch"));
}

static void keyval_check(const char *in, const char *implied,
                         const char *want)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) obj = keyval_parse(in, implied, &err);

    if (g_str_has_prefix(want, "E:")) {
        g_assert_null(obj);
        g_assert_cmpstr(err->message, ==, want + 2);
    } else {
        g_autoptr(JsonNode) node = NULL;
        g_autofree char *text = NULL;

        g_assert_no_error(err);
        node = qobj_new_object(json_object_ref(obj));
        text = qobj_to_json(node, false);
        g_assert_cmpstr(text, ==, want);
    }
}

static void test_keyval(void)
{
    keyval_check("driver=qcow2,file.driver=file,file.filename=a,,b.img",
                 NULL, "{\"driver\": \"qcow2\", \"file\": {\"driver\": "
                 "\"file\", \"filename\": \"a,b.img\"}}");
    keyval_check("qcow2,node-name=n", "driver",
                 "{\"driver\": \"qcow2\", \"node-name\": \"n\"}");
    keyval_check("a=1,a=2", NULL, "{\"a\": \"2\"}");
    keyval_check("l.0=x,l.1.k=y", NULL,
                 "{\"l\": [\"x\", {\"k\": \"y\"}]}");
    keyval_check("", NULL, "{}");
    keyval_check("a=", NULL, "{\"a\": \"\"}");
    keyval_check("l.0=x,l.2=y", NULL, "E:Parameter 'l.1' missing");
    keyval_check("a.b=1,a=2", NULL,
                 "E:Parameters 'a.*' used inconsistently");
    keyval_check("a=2,a.b=1", NULL,
                 "E:Parameters 'a.*' used inconsistently");
    keyval_check("=1", NULL, "E:Invalid parameter ''");
    keyval_check("a..b=1", NULL, "E:Invalid parameter 'a..b'");
    keyval_check("a=1,b", NULL, "E:Expected '=' after parameter 'b'");
    keyval_check("qcow2", NULL, "E:Expected '=' after parameter 'qcow2'");
}

static void test_json_output(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) n = qmp_json_parse(
        "{\"a\": [1, -2.5, true, null, \"\\u0001\\u007f\xe2\x82\xac\"], "
        "\"b\": {}}", 56, &err);
    g_autofree char *compact = NULL;
    g_autofree char *pretty = NULL;

    g_assert_no_error(err);
    compact = qobj_to_json(n, false);
    g_assert_cmpstr(compact, ==, "{\"a\": [1, -2.5, true, null, "
                    "\"\\u0001\\u007F\\u20AC\"], \"b\": {}}");
    pretty = qobj_to_json(n, true);
    g_assert_nonnull(strstr(pretty, "{\n    \"a\": [\n        1,\n"));
    g_assert_cmpuint(qobj_depth(n), ==, 2);
    g_assert_true(qobj_check_depth(n, 2, &err));
    g_assert_false(qobj_check_depth(n, 1, &err));
    g_assert_cmpstr(err->message, ==, "JSON nesting depth limit exceeded");
}

static void test_bad_schema(void)
{
    g_autoptr(GError) err = NULL;

    g_assert_null(qapi_schema_new("{}", &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_null(qapi_schema_new("[{\"x\": 1}]", &err));
    g_assert_nonnull(err);
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    int ret;

    g_test_init(&argc, &argv, NULL);
    schema = qapi_schema_new(test_qapi_validation_json, &err);
    g_assert_no_error(err);
    g_test_add_func("/qapi-validate/struct-members", test_struct_members);
    g_test_add_func("/qapi-validate/builtins", test_builtins);
    g_test_add_func("/qapi-validate/union", test_union);
    g_test_add_func("/qapi-validate/alternate", test_alternate);
    g_test_add_func("/qapi-validate/coerce", test_coerce);
    g_test_add_func("/qapi-validate/named-root-and-events",
                    test_named_root_and_events);
    g_test_add_func("/qapi-validate/keyval", test_keyval);
    g_test_add_func("/qapi-validate/json-output", test_json_output);
    g_test_add_func("/qapi-validate/bad-schema", test_bad_schema);
    ret = g_test_run();
    qapi_schema_free(schema);
    return ret;
}
