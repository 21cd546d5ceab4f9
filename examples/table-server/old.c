/* A line-oriented TCP server that serves entries of a price table.
 * Protocol: "GET <index>\n" -> "<index> <name> <price>\n"; "QUIT\n" closes.
 * Bug: the bounds check in lookup() lets index == TABLE_SIZE through, reading past the
 * table into whatever the compiler put next (here: an admin token). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct entry { char name[16]; long price; };

#define TABLE_SIZE 4
struct store { struct entry table[TABLE_SIZE]; struct entry admin; };
static struct store store = {
    { { "apple", 120 }, { "pear", 95 }, { "plum", 210 }, { "fig", 330 } },
    { "ADMIN-TOKEN-42", 999999 },
};

/* Real request handlers are too big to be inlined into their callers; noinline keeps this
 * small example the same shape, so the connection loop in serve() is left untouched. */
__attribute__((noinline)) const struct entry *lookup(long index)
{
    if (index < 0 || index > TABLE_SIZE)
        return NULL;
    return &store.table[index];
}

static void *serve(void *arg)
{
    int fd = (int)(long)arg;
    FILE *in = fdopen(fd, "r");
    FILE *out = fdopen(dup(fd), "w");
    char line[128];
    while (fgets(line, sizeof line, in)) {
        long index;
        if (strncmp(line, "QUIT", 4) == 0)
            break;
        if (sscanf(line, "GET %ld", &index) != 1) {
            fprintf(out, "ERR bad request\n");
        } else {
            const struct entry *e = lookup(index);
            if (e)
                fprintf(out, "%ld %s %ld\n", index, e->name, e->price);
            else
                fprintf(out, "ERR no such entry\n");
        }
        fflush(out);
    }
    fclose(in);
    fclose(out);
    return NULL;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 7070;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 16)) {
        perror("table-server");
        return 1;
    }
    printf("table-server listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t thread;
        pthread_create(&thread, NULL, serve, (void *)(long)fd);
        pthread_detach(thread);
    }
}
