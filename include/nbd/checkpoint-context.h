/*
 * block-export-add's "checkpoints": every element becomes a
 * qemu:dirty-bitmap:NAME metadata context serving what changed since a
 * checkpoint (NAME is the checkpoint's), or between two checkpoints
 * (NAME given, default "FROM..TO").  The change set is computed once,
 * when the export is created, and served from a frozen copy: clients
 * that already read qemu:dirty-bitmap:NAME contexts need no change, and
 * later writes or checkpoint changes do not move it.
 */
#ifndef NBD_CHECKPOINT_CONTEXT_H
#define NBD_CHECKPOINT_CONTEXT_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "block/block.h"

/*
 * Take "checkpoints" from @args (a JSON array, one string, or a keyval
 * object {"0": ..}; each element a checkpoint name or {"from", "to",
 * "name"}) and append one NbdBitmapContext per element to @out.
 */
bool nbd_checkpoint_contexts_take(JsonObject *args, BlockDriverState *bs,
                                  GPtrArray *out, GError **errp);

#endif
