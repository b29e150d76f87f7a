/* Row 3: the main thread creates and removes private segments in a loop;
 * a second thread ends the process (exit_group) after argv[1] creations,
 * most likely while the main thread is inside shmget. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_long made;
static long after;

static void *ender(void *arg) {
    (void)arg;
    while (atomic_load(&made) < after) {}
    printf("second thread: exit_group after %ld creations\n", atomic_load(&made));
    fflush(stdout);
    syscall(SYS_exit_group, 0);
    return 0;
}

int main(int argc, char **argv) {
    after = argc > 1 ? atol(argv[1]) : 20;
    pthread_t t;
    pthread_create(&t, 0, ender, 0);
    for (;;) {
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (id < 0) { perror("shmget"); return 1; }
        atomic_fetch_add(&made, 1);
        shmctl(id, IPC_RMID, 0);
    }
}
