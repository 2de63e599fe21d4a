/*
 * The qemu-img subcommand handlers (one img-NAME.c each) and the option
 * lists `qemu-img NAME --help` prints.  New commands (bitmap, checkpoint)
 * add a handler and a help macro here and a row in main.c's table.
 */
#ifndef QEMU_IMG_IMG_CMDS_H
#define QEMU_IMG_IMG_CMDS_H

#include "img-common.h"

int img_bench(const ImgCmd *cmd, int argc, char **argv);
int img_bitmap(const ImgCmd *cmd, int argc, char **argv);
int img_check(const ImgCmd *cmd, int argc, char **argv);
int img_checkpoint(const ImgCmd *cmd, int argc, char **argv);
int img_compare(const ImgCmd *cmd, int argc, char **argv);
int img_convert(const ImgCmd *cmd, int argc, char **argv);
int img_create(const ImgCmd *cmd, int argc, char **argv);
int img_info(const ImgCmd *cmd, int argc, char **argv);
int img_map(const ImgCmd *cmd, int argc, char **argv);
int img_resize(const ImgCmd *cmd, int argc, char **argv);

#define IMG_COMMON_OPEN_HELP \
    "  -f, --format FMT     image format (default: probe the file)\n" \
    "  --image-opts         FILE is an option string (driver=...,...)\n" \
    "  --object OBJDEF      define an object (only 'secret' is known)\n"

#define IMG_BENCH_HELP \
    IMG_COMMON_OPEN_HELP \
    "  -c, --count N        number of requests (default 75000)\n" \
    "  -d, --depth N        requests in flight at once (default 64)\n" \
    "  -s, --buffer-size S  bytes per request (default 4k)\n" \
    "  -S, --step-size S    distance between request offsets (default:\n" \
    "                       the buffer size); wraps at the image end\n" \
    "  -o, --offset OFF     offset of the first request\n" \
    "  -w, --write          write instead of read\n" \
    "  --pattern=BYTE       byte written by -w (default 0)\n" \
    "  --flush-interval=N   flush after every N writes (-w only)\n" \
    "  --no-drain           flush without waiting for requests in flight\n" \
    "  -t, --cache MODE     cache mode (default writeback)\n" \
    "  -n, --nocache        same as -t none\n" \
    "  -i, --aio MODE       accepted for compatibility (threads, native)\n" \
    "  -q, --quiet          accepted for compatibility\n" \
    "  -U, --force-share    open without taking the image lock\n"

#define IMG_BITMAP_HELP \
    IMG_COMMON_OPEN_HELP \
    "  --add                create the persistent bitmap BITMAP (recording)\n" \
    "  --remove             delete BITMAP\n" \
    "  --clear              make every bit of BITMAP clean\n" \
    "  --enable, --disable  start or stop BITMAP recording writes\n" \
    "  --merge SOURCE       OR bitmap SOURCE into BITMAP\n" \
    "  -b SOURCE_FILE       --merge takes SOURCE from this image\n" \
    "  -F SOURCE_FMT        format of SOURCE_FILE\n" \
    "  -g GRANULARITY       bytes per bit for --add (default: cluster size,\n" \
    "                       between 4k and 64k)\n" \
    "  --list               list the bitmaps of FILE with their state and\n" \
    "                       dirty byte count (no BITMAP operand)\n" \
    "  --output human|json  output format of --list\n" \
    "  -U, --force-share    with --list: open without taking the lock\n" \
    "Operations run in the order given; those before a failure are kept.\n"

#define IMG_CHECK_HELP \
    IMG_COMMON_OPEN_HELP \
    "  -r, --repair leaks|all  repair leaked clusters, or every error\n" \
    "  --output human|json  output format (default human)\n" \
    "  -T, --cache MODE     cache mode for the image\n" \
    "  -U, --force-share    open without taking the image lock\n" \
    "  -q, --quiet          print errors only\n" \
    "Exit status: 0 clean, 1 check not completed, 2 corruptions found,\n" \
    "3 leaked clusters only, 63 format cannot be checked.\n"

#define IMG_CHECKPOINT_HELP \
    IMG_COMMON_OPEN_HELP \
    "  -l, --list           list the checkpoints, oldest first, with the\n" \
    "                       bytes changed since each usable one\n" \
    "  -c, --create NAME    create checkpoint NAME (the newest from now on)\n" \
    "  -g GRANULARITY       bytes per bit of its bitmap for -c (default:\n" \
    "                       cluster size, between 4k and 64k)\n" \
    "  -b BITMAP            name of its bitmap for -c (default: NAME)\n" \
    "  -d, --delete NAME    remove checkpoint NAME; its writes go to its\n" \
    "                       parent, so no other change set changes\n" \
    "  --diff NAME          the extents changed since checkpoint NAME\n" \
    "  --to NAME2           with --diff: changed between NAME and NAME2\n" \
    "  --output human|json  output format of -l and --diff\n" \
    "  -U, --force-share    with -l/--diff: open without taking the lock\n"

#define IMG_COMPARE_HELP \
    "  -f FMT               format of FILE1\n" \
    "  -F FMT               format of FILE2\n" \
    "  --image-opts         both files are option strings\n" \
    "  --object OBJDEF      define an object (only 'secret' is known)\n" \
    "  -s, --strict         also fail on a size or allocation difference\n" \
    "  -T, --cache MODE     cache mode for both images\n" \
    "  -p, --progress       show progress\n" \
    "  -q, --quiet          print errors only\n" \
    "  -U, --force-share    open without taking the image locks\n" \
    "Exit status: 0 identical, 1 different, 2 error.\n"

#define IMG_CONVERT_HELP \
    "  -f FMT               source format (default: probe)\n" \
    "  -O FMT               output format (default raw)\n" \
    "  -o OPTIONS           creation options of the output format\n" \
    "  -B BACKING, -F FMT   backing file (and its format) of the output\n" \
    "  -c                   compress the output (qcow2 only)\n" \
    "  -n                   write into an existing OUTPUT_FILE\n" \
    "  --target-is-zero     with -n: OUTPUT_FILE already reads as zeroes\n" \
    "  -S SIZE              zero runs this long stay unallocated (4k)\n" \
    "  -t, -T MODE          cache mode of output and source\n" \
    "  -m NUM, -W           accepted for compatibility\n" \
    "  -p                   show progress\n" \
    "  -q                   print errors only\n" \
    "  -U                   open the source without taking its lock\n" \
    "  --image-opts, --target-image-opts  option strings for the files\n" \
    "  --bitmaps            copy the persistent bitmaps (qcow2 to qcow2)\n" \
    "  --skip-broken-bitmaps  with --bitmaps: skip inconsistent ones\n"

#define IMG_CREATE_HELP \
    "  -f FMT               image format (default raw)\n" \
    "  -o OPTIONS           creation options; '-o help' lists them\n" \
    "  -b BACKING           backing file (size defaults to its size)\n" \
    "  -F FMT               format of the backing file\n" \
    "  -u                   do not open the backing file\n" \
    "  -q                   print errors only\n" \
    "  --object OBJDEF      define an object (only 'secret' is known)\n"

#define IMG_INFO_HELP \
    IMG_COMMON_OPEN_HELP \
    "  --output human|json  output format (default human)\n" \
    "  --backing-chain      describe every image of the backing chain\n" \
    "  -U, --force-share    open without taking the image lock\n"

#define IMG_MAP_HELP \
    IMG_COMMON_OPEN_HELP \
    "  --output human|json  output format (default human)\n" \
    "  -s, --start-offset OFF  first guest offset to describe\n" \
    "  -l, --max-length LEN    describe at most LEN bytes\n" \
    "  --bitmap NAME        show the dirty extents of bitmap NAME instead\n" \
    "  -U, --force-share    open without taking the image lock\n"

#define IMG_RESIZE_HELP \
    IMG_COMMON_OPEN_HELP \
    "  --preallocation=MODE off, metadata, falloc or full for new space\n" \
    "  --shrink             allow making the image smaller\n" \
    "  -q                   print errors only\n" \
    "SIZE is absolute, or relative with a leading + or -.\n"

#endif
