/* Row 6: given a key (`${k}` of the scenario), creates-or-opens a segment at
 * it and removes what it got, printing the owner it found. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    key_t key = (key_t)strtoul(argv[1], 0, 0);
    int id = shmget(key, 4096, IPC_CREAT | 0600);
    if (id < 0) { printf("shmget(%s, IPC_CREAT): %s\n", argv[1], strerror(errno)); return 1; }
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) == 0)
        printf("shmget(%s, IPC_CREAT) = shmid %d, owner uid %d\n", argv[1], id, (int)ds.shm_perm.uid);
    if (shmctl(id, IPC_RMID, 0)) { printf("IPC_RMID %d: %s\n", id, strerror(errno)); return 1; }
    printf("removed shmid %d\n", id);
    return 0;
}
