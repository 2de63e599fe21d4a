/*
 * --chardev definitions of the storage daemon.  Only Unix socket servers
 * that do not wait for a client are supported: that is what a QMP monitor
 * needs.  The socket itself is created when a --monitor uses the chardev.
 */
#ifndef STORAGE_DAEMON_QSD_CHARDEV_H
#define STORAGE_DAEMON_QSD_CHARDEV_H

#include <glib.h>
#include <stdbool.h>

typedef struct QsdChardev {
    char *id;
    char *path;
} QsdChardev;

/* Parse and record "socket,id=ID,path=P,server=on,wait=off". */
bool qsd_chardev_add(const char *arg, GError **errp);
const QsdChardev *qsd_chardev_find(const char *id);
void qsd_chardev_cleanup(void);

#endif
