/*
 * Active and inactive nodes: who owns an image during a migration.
 *
 * Two storage daemons open the same image files.  Exactly one of them is
 * *active*: it may write data and metadata, flags recording persistent
 * bitmaps in-use before its first write and stores them on close.  The
 * other one is *inactive* (BDRV_O_INACTIVE): it reads, but never writes
 * (block/io.c refuses writes with -EPERM), its format drivers treat the
 * image as read-only, its persistent bitmaps are read-only and never
 * stored, and its file locks claim no write permission and share every
 * permission, so that the owner keeps its locks.
 *
 * Inactivating a node (the migration source at the switch-over) stores
 * its persistent bitmaps (except those marked with
 * bdrv_dirty_bitmap_skip_store(): they migrate, and the destination
 * stores them) and everything else the driver caches, flushes, reopens
 * the driver read-only and releases the write locks.  Activating
 * a node (the destination at the end of the migration, or the source
 * again when the migration failed) takes the write locks - which fails
 * while another process still holds them - and reopens the driver
 * read-write: the image may have changed since the node was opened, so
 * every piece of metadata is read again.
 *
 * Dirty bitmap objects survive both transitions when @keep_bitmaps is
 * true (the source resuming: its memory is the truth).  With
 * @keep_bitmaps false (the destination taking over) the persistent
 * bitmaps the node loaded while inactive are replaced by those the image
 * holds now; bitmaps that live in memory only are kept.
 *
 * Callers drain the nodes (bdrv_drained_begin()) first.  Main thread only.
 */
#ifndef BLOCK_ACTIVATION_H
#define BLOCK_ACTIVATION_H

#include "block/block.h"

bool bdrv_is_inactive(BlockDriverState *bs);

/* Inactivate @bs and its children (file, backing). */
bool bdrv_inactivate(BlockDriverState *bs, GError **errp);
/* Activate @bs and its children. */
bool bdrv_activate(BlockDriverState *bs, bool keep_bitmaps, GError **errp);

/*
 * Every node of the graph.  All or nothing: on failure, the nodes changed
 * so far are changed back (as far as that works).
 */
bool bdrv_inactivate_all(GError **errp);
bool bdrv_activate_all(bool keep_bitmaps, GError **errp);

/*
 * While an incoming migration is expected (qemu-storage-daemon
 * --incoming), nodes created by blockdev-add open inactive.
 */
void bdrv_set_incoming_migration(bool incoming);
bool bdrv_incoming_migration(void);

/*
 * Implemented in block/block.c: (re)take the file locks of protocol node
 * @file for what a parent of driver @drv (NULL: none) opened with @flags
 * does with it.
 */
bool bdrv_apply_file_perm(BlockDriverState *file, const BlockDriver *drv,
                          int flags, GError **errp);

#endif
