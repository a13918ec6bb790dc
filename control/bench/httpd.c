/* fastnet bench: a tiny HTTP/1.0 server for connection-rate tests (wrk with Connection: close).
 * One process per CPU (fork), each: accept, read the request, write a fixed reply, close.
 * usage: fn-bench-httpd PORT [WORKERS] */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char reply[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

static void serve(int lfd) {
    char buf[4096];
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            continue;
        ssize_t n = read(c, buf, sizeof(buf));
        if (n > 0)
            (void)!write(c, reply, sizeof(reply) - 1);
        close(c);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 80, workers = argc > 2 ? atoi(argv[2]) : 1, one = 1;
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4096))
        return 1;
    for (int i = 1; i < workers; i++)
        if (fork() == 0)
            break;
    serve(lfd);
    return 0;
}
