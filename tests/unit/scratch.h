/*
 * Scratch directories for unit tests that need files, and images created
 * and opened in them.
 */
#ifndef TESTS_UNIT_SCRATCH_H
#define TESTS_UNIT_SCRATCH_H

#include "block/block.h"

/* A new empty directory under the system's temporary one. */
char *test_scratch_dir(const char *prefix);
/* Remove @dir and everything in it, and free the name. */
void test_scratch_remove(char *dir);
/*
 * Create an image of format @fmt and @size bytes named @name in @dir and
 * open it; its path in *@path_out if that is not NULL.
 */
BlockDriverState *test_create_open(const char *dir, const char *name,
                                   const char *fmt, int64_t size, int flags,
                                   char **path_out);

#endif
