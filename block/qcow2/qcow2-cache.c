/*
 * Write-back cache of metadata tables (slices of L2 tables, refcount
 * blocks), with LRU eviction and write ordering between caches: when a
 * cache depends on another, its dirty tables reach the file only after the
 * other cache has been written and the file synced.  That is how "a
 * refcount increment is stable before an L2 entry uses the cluster" and
 * "an L2 entry is gone before the refcount drop" are kept (see
 * docs/interop/qcow2.md, "Update ordering").  Lock held for every call.
 */
#include "qcow2.h"

#include <errno.h>
#include <string.h>

typedef struct Qcow2CacheEntry {
    uint64_t offset;        /* 0: the slot is empty */
    void *table;
    int ref;
    bool dirty;
    GList link;             /* in Qcow2Cache.lru; data points here */
} Qcow2CacheEntry;

struct Qcow2Cache {
    Qcow2CacheEntry *entries;
    uint8_t *tables;        /* size * table_size bytes, touched lazily */
    int size;
    uint64_t table_size;
    Qcow2MetaKind kind;
    GHashTable *index;      /* offset -> slot + 1 */
    Qcow2Cache *depends;
    /*
     * Most recently used first; empty slots go to the tail, where
     * eviction looks first.  A list rather than a scan: with small L2
     * slices the cache has thousands of entries.
     */
    GQueue lru;
};

Qcow2Cache *qcow2_cache_new(int tables, uint64_t table_size,
                            Qcow2MetaKind kind)
{
    Qcow2Cache *c = g_new0(Qcow2Cache, 1);

    c->size = MAX(tables, 2);
    c->tables = g_try_malloc((size_t)c->size * table_size);
    if (!c->tables) {
        g_free(c);
        return NULL;
    }
    c->entries = g_new0(Qcow2CacheEntry, c->size);
    g_queue_init(&c->lru);
    for (int i = 0; i < c->size; i++) {
        c->entries[i].table = c->tables + (size_t)i * table_size;
        c->entries[i].link.data = &c->entries[i];
        g_queue_push_tail_link(&c->lru, &c->entries[i].link);
    }
    c->table_size = table_size;
    c->kind = kind;
    c->index = g_hash_table_new(g_direct_hash, g_direct_equal);
    return c;
}

void qcow2_cache_free(Qcow2Cache *c)
{
    if (!c) {
        return;
    }
    g_free(c->tables);
    g_free(c->entries);
    g_hash_table_unref(c->index);
    g_free(c);
}

bool qcow2_cache_has_dirty(Qcow2Cache *c)
{
    for (int i = 0; i < c->size; i++) {
        if (c->entries[i].dirty) {
            return true;
        }
    }
    return false;
}

int qcow2_cache_num_tables(Qcow2Cache *c)
{
    return c->size;
}

static int find_slot(Qcow2Cache *c, uint64_t offset)
{
    gpointer v = g_hash_table_lookup(c->index, GSIZE_TO_POINTER(offset));
    return v ? GPOINTER_TO_INT(v) - 1 : -1;
}

static int slot_of_table(Qcow2Cache *c, void *table)
{
    size_t i = ((uint8_t *)table - c->tables) / c->table_size;

    g_assert(i < (size_t)c->size && c->entries[i].table == table);
    return (int)i;
}

/*
 * Write and sync the cache @c depends on, and forget the dependency once
 * that worked: after a failure, @c's tables must keep waiting.
 */
static int flush_dependency(BlockDriverState *bs, Qcow2Cache *c)
{
    Qcow2Cache *dep = c->depends;
    int ret;

    if (!dep) {
        return 0;
    }
    c->depends = NULL;
    ret = qcow2_cache_flush(bs, dep);
    if (ret < 0 && !c->depends) {
        c->depends = dep;
    }
    return ret;
}

static int entry_write(BlockDriverState *bs, Qcow2Cache *c, int i)
{
    Qcow2CacheEntry *e = &c->entries[i];
    int ret;

    if (!e->dirty) {
        return 0;
    }
    ret = flush_dependency(bs, c);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_pre_write_check(bs, c->kind, e->offset, c->table_size);
    if (ret < 0) {
        return ret;
    }
    ret = bdrv_pwrite(bs->file, e->offset, c->table_size, e->table, 0);
    if (ret < 0) {
        return ret;
    }
    e->dirty = false;
    return 0;
}

/* Move an emptied slot to the tail: the next one to be reused. */
static void make_empty(Qcow2Cache *c, int i)
{
    c->entries[i].offset = 0;
    c->entries[i].dirty = false;
    g_queue_unlink(&c->lru, &c->entries[i].link);
    g_queue_push_tail_link(&c->lru, &c->entries[i].link);
}

/* Pick a slot for a new table: an empty one, else the least recently used. */
static int pick_victim(BlockDriverState *bs, Qcow2Cache *c)
{
    int best = -1;
    int ret;

    for (GList *l = c->lru.tail; l; l = l->prev) {
        Qcow2CacheEntry *e = l->data;
        if (!e->ref) {
            best = (int)(e - c->entries);
            break;
        }
    }
    if (best < 0) {
        return -ENOSPC; /* every table is in use: a bug, not bad input */
    }
    ret = entry_write(bs, c, best);
    if (ret < 0) {
        return ret;
    }
    if (c->entries[best].offset) {
        g_hash_table_remove(c->index,
                            GSIZE_TO_POINTER(c->entries[best].offset));
        c->entries[best].offset = 0;
    }
    return best;
}

static int cache_do_get(BlockDriverState *bs, Qcow2Cache *c,
                        uint64_t offset, void **table, bool read)
{
    int i = find_slot(c, offset);
    int ret;

    if (i < 0) {
        i = pick_victim(bs, c);
        if (i < 0) {
            return i;
        }
        if (read) {
            ret = qcow2_read_host(bs, offset, c->table_size,
                                  c->entries[i].table);
            if (ret < 0) {
                return ret;
            }
        }
        c->entries[i].offset = offset;
        c->entries[i].dirty = false;
        g_hash_table_insert(c->index, GSIZE_TO_POINTER(offset),
                            GINT_TO_POINTER(i + 1));
    }
    c->entries[i].ref++;
    if (c->lru.head != &c->entries[i].link) {
        g_queue_unlink(&c->lru, &c->entries[i].link);
        g_queue_push_head_link(&c->lru, &c->entries[i].link);
    }
    *table = c->entries[i].table;
    return 0;
}

int qcow2_cache_get(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset,
                    void **table)
{
    return cache_do_get(bs, c, offset, table, true);
}

int qcow2_cache_get_empty(BlockDriverState *bs, Qcow2Cache *c,
                          uint64_t offset, void **table)
{
    return cache_do_get(bs, c, offset, table, false);
}

void qcow2_cache_put(Qcow2Cache *c, void **table)
{
    int i = slot_of_table(c, *table);

    g_assert(c->entries[i].ref > 0);
    c->entries[i].ref--;
    *table = NULL;
}

void qcow2_cache_mark_dirty(Qcow2Cache *c, void *table)
{
    c->entries[slot_of_table(c, table)].dirty = true;
}

int qcow2_cache_write(BlockDriverState *bs, Qcow2Cache *c)
{
    int result = 0;

    for (int i = 0; i < c->size; i++) {
        int ret = entry_write(bs, c, i);
        if (ret < 0 && result == 0) {
            result = ret;
        }
    }
    return result;
}

int qcow2_cache_flush(BlockDriverState *bs, Qcow2Cache *c)
{
    int ret = qcow2_cache_write(bs, c);

    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

int qcow2_cache_set_dependency(BlockDriverState *bs, Qcow2Cache *c,
                               Qcow2Cache *dep)
{
    int ret;

    if (c->depends == dep) {
        return 0;
    }
    /* Break a cycle: what @dep waits for goes out first. */
    if (dep->depends) {
        ret = flush_dependency(bs, dep);
        if (ret < 0) {
            return ret;
        }
    }
    if (c->depends) {
        ret = flush_dependency(bs, c);
        if (ret < 0) {
            return ret;
        }
    }
    c->depends = dep;
    return 0;
}

void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset, uint64_t bytes)
{
    for (uint64_t o = offset; o < offset + bytes; o += c->table_size) {
        int i = find_slot(c, o);

        if (i < 0 || c->entries[i].ref) {
            continue; /* a table in use stays: only a corrupt image */
        }
        g_hash_table_remove(c->index, GSIZE_TO_POINTER(o));
        make_empty(c, i);
    }
}

int qcow2_cache_empty(BlockDriverState *bs, Qcow2Cache *c)
{
    int ret = qcow2_cache_write(bs, c);

    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < c->size; i++) {
        if (c->entries[i].ref) {
            return -EBUSY;
        }
    }
    for (int i = 0; i < c->size; i++) {
        if (c->entries[i].offset) {
            make_empty(c, i);
        }
    }
    g_hash_table_remove_all(c->index);
    return 0;
}
