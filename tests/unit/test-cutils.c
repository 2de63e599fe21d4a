/* Size and number parsing edge cases (util/cutils.c). */
#include "util/cutils.h"

static void check_size(const char *s, bool ok, uint64_t expect)
{
    g_autoptr(GError) err = NULL;
    uint64_t v = 0;
    bool r = parse_size(s, 'B', &v, &err);

    g_assert_cmpint(r, ==, ok);
    if (ok) {
        g_assert_no_error(err);
        g_assert_cmpuint(v, ==, expect);
    } else {
        g_assert_nonnull(err);
    }
}

static void test_sizes_valid(void)
{
    check_size("0", true, 0);
    check_size("512", true, 512);
    check_size("1k", true, 1024);
    check_size("1K", true, 1024);
    check_size("64M", true, 64 << 20);
    check_size("1G", true, UINT64_C(1) << 30);
    check_size("2T", true, UINT64_C(2) << 40);
    check_size("1.5G", true, UINT64_C(3) << 29);
    check_size("1E", true, UINT64_C(1) << 60);
    check_size("15E", true, UINT64_C(15) << 60);
}

static void test_sizes_invalid(void)
{
    check_size("", false, 0);
    check_size("-1", false, 0);
    check_size("1Q", false, 0);
    check_size("99999999999999999999", false, 0);
    check_size("0x", false, 0);
    check_size("0x10", false, 0);
    check_size("16E", false, 0);
    check_size("1kk", false, 0);
    check_size("k", false, 0);
    check_size("1.", false, 0);
    check_size("0.0000001k", false, 0);
}

static void test_default_suffix(void)
{
    uint64_t v;
    g_assert_true(parse_size("2", 'M', &v, NULL));
    g_assert_cmpuint(v, ==, 2 << 20);
}

static void test_ints(void)
{
    uint64_t u;
    int64_t i;

    g_assert_true(parse_uint64("42", &u, NULL));
    g_assert_cmpuint(u, ==, 42);
    g_assert_true(parse_uint64("0x10", &u, NULL));
    g_assert_cmpuint(u, ==, 16);
    g_assert_false(parse_uint64("-1", &u, NULL));
    g_assert_false(parse_uint64("12a", &u, NULL));
    g_assert_false(parse_uint64("", &u, NULL));
    g_assert_false(parse_uint64("99999999999999999999", &u, NULL));
    g_assert_true(parse_int64("-5", &i, NULL));
    g_assert_cmpint(i, ==, -5);
    g_assert_false(parse_int64("5 ", &i, NULL));
}

static void test_size_to_str(void)
{
    static const struct {
        uint64_t v;
        const char *s;
    } cases[] = {
        {0, "0 B"},
        {512, "512 B"},
        {1024, "1 KiB"},
        {196608, "192 KiB"},
        {UINT64_C(1) << 30, "1 GiB"},
        {UINT64_C(3) << 29, "1.5 GiB"},
        {1000, "0.977 KiB"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *s = size_to_str(cases[i].v);
        g_assert_cmpstr(s, ==, cases[i].s);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cutils/size/valid", test_sizes_valid);
    g_test_add_func("/cutils/size/invalid", test_sizes_invalid);
    g_test_add_func("/cutils/size/default-suffix", test_default_suffix);
    g_test_add_func("/cutils/ints", test_ints);
    g_test_add_func("/cutils/size-to-str", test_size_to_str);
    return g_test_run();
}
