/* mpi_bench: the same point-to-point methodology as `mpr-bench`, written
 * against the C MPI API so that a system MPI (Open MPI, MPICH) can be
 * measured beside mpr on the same machine in the same run.
 *
 *   mpirun -n 2 ./mpi_bench latency|bw|bibw [-m min:max] [--csv]
 *
 * Latency: ping-pong between ranks 0 and 1, half the round trip, 100+10000
 * iterations up to 8 KiB, 10+1000 above. Bandwidth: window of 64
 * non-blocking sends then a 4-byte ack, 10+100 / 2+20 iterations, MB = 1e6. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LARGE 8192
#define WINDOW 64

static void parse_range(const char *text, size_t *min, size_t *max) {
    const char *colon = strchr(text, ':');
    if (colon) {
        *min = strtoull(text, NULL, 10);
        *max = strtoull(colon + 1, NULL, 10);
    } else {
        *max = strtoull(text, NULL, 10);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 2 || size < 2) {
        if (rank == 0) fprintf(stderr, "usage: mpirun -n 2 mpi_bench latency|bw|bibw [-m min:max] [--csv]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *bench = argv[1];
    int latency = strcmp(bench, "latency") == 0, bibw = strcmp(bench, "bibw") == 0;
    size_t min = latency ? 0 : 1, max = 4 << 20;
    int csv = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) parse_range(argv[++i], &min, &max);
        else if (strcmp(argv[i], "--csv") == 0) csv = 1;
    }
    char *sendbuf = malloc(max ? max : 1), *recvbuf = malloc((max ? max : 1) * WINDOW);
    memset(sendbuf, 'a', max ? max : 1);
    int peer = 1 - rank;
    if (rank == 0) {
        if (csv) printf("size,%s\n", latency ? "latencyus" : "bandwidthmbs");
        else printf("# mpi_bench %s\n# Size     %18s\n", bench, latency ? "Latency (us)" : "Bandwidth (MB/s)");
    }
    size_t first = min == 0 ? 0 : 1;
    while (first && first < min) first *= 2;
    for (size_t s = first; s <= max; s = s ? s * 2 : 1) {
        if (rank > 1) continue;
        double value;
        if (latency) {
            int warm = s > LARGE ? 10 : 100, iters = s > LARGE ? 1000 : 10000;
            double t0 = 0;
            for (int i = 0; i < warm + iters; i++) {
                if (i == warm) t0 = MPI_Wtime();
                if (rank == 0) {
                    MPI_Send(sendbuf, (int)s, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
                    MPI_Recv(recvbuf, (int)s, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else {
                    MPI_Recv(recvbuf, (int)s, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    MPI_Send(sendbuf, (int)s, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
                }
            }
            value = (MPI_Wtime() - t0) * 1e6 / (2.0 * iters);
        } else {
            int warm = s > LARGE ? 2 : 10, iters = s > LARGE ? 20 : 100;
            MPI_Request reqs[2 * WINDOW];
            char ack[4];
            double t0 = 0;
            for (int i = 0; i < warm + iters; i++) {
                if (i == warm) t0 = MPI_Wtime();
                int n = 0;
                if (rank == 1 || bibw)
                    for (int w = 0; w < WINDOW; w++)
                        MPI_Irecv(recvbuf + w * s, (int)s, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &reqs[n++]);
                if (rank == 0 || bibw)
                    for (int w = 0; w < WINDOW; w++)
                        MPI_Isend(sendbuf, (int)s, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &reqs[n++]);
                MPI_Waitall(n, reqs, MPI_STATUSES_IGNORE);
                if (rank == 0) MPI_Recv(ack, 4, MPI_CHAR, 1, 101, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                else MPI_Send(ack, 4, MPI_CHAR, 0, 101, MPI_COMM_WORLD);
            }
            value = (double)s * WINDOW * iters * (bibw ? 2 : 1) / (MPI_Wtime() - t0) / 1e6;
        }
        if (rank == 0) {
            if (csv) printf("%zu,%.3f\n", s, value);
            else printf("%-12zu%18.2f\n", s, value);
        }
    }
    free(sendbuf);
    free(recvbuf);
    MPI_Finalize();
    return 0;
}
