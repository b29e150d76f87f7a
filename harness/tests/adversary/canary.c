/* The canary: a segment of another uid (run it under setpriv), mode 0600,
 * at KEY (hex, or 0 for IPC_PRIVATE). Prints "canary SHMID" and exits; the
 * segment stays. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv) {
    key_t key = argc > 1 ? (key_t)strtoul(argv[1], 0, 0) : IPC_PRIVATE;
    int flags = IPC_CREAT | 0600 | (key == IPC_PRIVATE ? 0 : IPC_EXCL);
    int id = shmget(key, 4096, flags);
    if (id < 0) { perror("canary: shmget"); return 1; }
    printf("canary %d\n", id);
    return 0;
}
