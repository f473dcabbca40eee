/* mpi_bench: the same point-to-point methodology as `mpr-bench`, written
 * against the C MPI API so that a system MPI (Open MPI, MPICH) can be
 * measured beside mpr on the same machine in the same run.
 *
 *   mpirun -n 2 ./mpi_bench latency|bw|bibw [-m min:max] [--csv]
 *   mpirun -n N ./mpi_bench bcast|allreduce|reduce|gather|scatter|allgather|alltoall|barrier|reduce_scatter [-m min:max] [-i iters] [--csv] [-f]
 *
 * Latency: ping-pong between ranks 0 and 1, half the round trip, 100+10000
 * iterations up to 8 KiB, 10+1000 above. Bandwidth: window of 64
 * non-blocking sends then a 4-byte ack, 10+100 / 2+20 iterations, MB = 1e6;
 * the receiver posts its window in batches that fit --recv-footprint bytes
 * (default 1 MiB; 0: the whole window, each message in its own slice).
 * Collectives with -f also print the minimum and maximum over ranks and the
 * iteration time: rank 0's wall time of the timed loop (collective and the
 * barrier after it) per iteration. */
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

/* Collectives, OSU-style: each call timed on its own, a barrier between
 * calls (not timed); per-rank average, then average/min/max over ranks.
 * Sizes: bytes per rank for gather/scatter/allgather/alltoall (per-rank
 * block), whole buffer for bcast/reduce/allreduce/reduce_scatter. */
static int run_collective(const char *bench, size_t min, size_t max, int csv, int full, int small_iters, int dup) {
    int rank, size;
    int kind;
    const char *names[] = {"bcast", "allreduce", "reduce", "gather", "scatter", "allgather", "alltoall", "barrier", "reduce_scatter"};
    for (kind = 0; kind < 9; kind++)
        if (strcmp(bench, names[kind]) == 0) break;
    if (kind == 9) return 0;
    MPI_Comm comm = MPI_COMM_WORLD;
    if (dup) MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    size_t cap = (max ? max : 1) * (size_t)size;
    char *sbuf = malloc(cap), *rbuf = malloc(cap);
    memset(sbuf, 1, cap);
    memset(rbuf, 0, cap);
    if (rank == 0) {
        if (csv) printf("size,avglatencyus%s\n", full ? ",minlatencyus,maxlatencyus,iterationus" : "");
        else printf("# mpi_bench %s (%d ranks)\n# Size     %18s%s\n", bench, size, "Avg Latency(us)", full ? "   Min Latency(us)   Max Latency(us)     Iteration(us)" : "");
    }
    size_t first = kind == 7 ? 0 : (min ? min : 1);
    if (kind == 1 || kind == 2 || kind == 8) first = first < 4 ? 4 : first;
    for (size_t s = first; s <= (kind == 7 ? 0 : max); s = s ? s * 2 : 1) {
        int warm = s > LARGE ? 10 : 200, iters = s > LARGE ? 100 : 1000;
        if (small_iters > 0) {
            iters = s > LARGE ? (small_iters / 10 > 0 ? small_iters / 10 : 1) : small_iters;
        }
        int count = (int)s;
        int fcount = (int)(s / 4);
        int *counts = malloc(sizeof(int) * size);
        for (int i = 0; i < size; i++) counts[i] = fcount / size > 0 ? fcount / size : 1;
        double total = 0, loop0 = MPI_Wtime();
        MPI_Barrier(comm);
        for (int i = 0; i < warm + iters; i++) {
            double t0 = MPI_Wtime();
            if (i == warm) loop0 = t0; /* -f: wall time per iteration, barrier included */
            switch (kind) {
            case 0: MPI_Bcast(sbuf, count, MPI_CHAR, 0, comm); break;
            case 1: MPI_Allreduce(sbuf, rbuf, fcount, MPI_FLOAT, MPI_SUM, comm); break;
            case 2: MPI_Reduce(sbuf, rbuf, fcount, MPI_FLOAT, MPI_SUM, 0, comm); break;
            case 3: MPI_Gather(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, 0, comm); break;
            case 4: MPI_Scatter(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, 0, comm); break;
            case 5: MPI_Allgather(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, comm); break;
            case 6: MPI_Alltoall(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, comm); break;
            case 7: MPI_Barrier(comm); break;
            case 8: MPI_Reduce_scatter(sbuf, rbuf, counts, MPI_FLOAT, MPI_SUM, comm); break;
            }
            double t = MPI_Wtime() - t0;
            if (i >= warm) total += t;
            if (kind != 7) MPI_Barrier(comm);
        }
        free(counts);
        double iteration = (MPI_Wtime() - loop0) * 1e6 / iters;
        double mine = total * 1e6 / iters, avg, lo, hi;
        MPI_Reduce(&mine, &avg, 1, MPI_DOUBLE, MPI_SUM, 0, comm);
        MPI_Reduce(&mine, &lo, 1, MPI_DOUBLE, MPI_MIN, 0, comm);
        MPI_Reduce(&mine, &hi, 1, MPI_DOUBLE, MPI_MAX, 0, comm);
        avg /= size;
        if (rank == 0) {
            if (csv) {
                if (full) printf("%zu,%.3f,%.3f,%.3f,%.3f\n", s, avg, lo, hi, iteration);
                else printf("%zu,%.3f\n", s, avg);
            } else {
                if (full) printf("%-12zu%18.2f%18.2f%18.2f%18.2f\n", s, avg, lo, hi, iteration);
                else printf("%-12zu%18.2f\n", s, avg);
            }
        }
        if (kind == 7) break;
    }
    free(sbuf);
    free(rbuf);
    if (dup) MPI_Comm_free(&comm);
    return 1;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 2) {
        if (rank == 0) fprintf(stderr, "usage: mpirun -n N mpi_bench latency|bw|bibw|bcast|allreduce|reduce|gather|scatter|allgather|alltoall|barrier|reduce_scatter [-m min:max] [--csv] [-f] [--dup]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *bench = argv[1];
    {
        size_t cmin = 1, cmax = 1 << 20;
        int ccsv = 0, full = 0, citers = 0, dup = 0;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) parse_range(argv[++i], &cmin, &cmax);
            else if (strcmp(argv[i], "--csv") == 0) ccsv = 1;
            else if (strcmp(argv[i], "-f") == 0) full = 1;
            else if (strcmp(argv[i], "--dup") == 0) dup = 1;
            else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc) citers = atoi(argv[++i]);
        }
        if (run_collective(bench, cmin, cmax, ccsv, full, citers, dup)) {
            MPI_Finalize();
            return 0;
        }
    }
    if (size < 2) {
        if (rank == 0) fprintf(stderr, "point-to-point benchmarks need 2 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int latency = strcmp(bench, "latency") == 0, bibw = strcmp(bench, "bibw") == 0;
    if (!latency && !bibw && strcmp(bench, "bw") != 0) {
        if (rank == 0) fprintf(stderr, "mpi_bench: unknown benchmark '%s'\n", bench);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    size_t min = latency ? 0 : 1, max = 4 << 20;
    int csv = 0;
    size_t footprint = 1 << 20; /* --recv-footprint, as in mpr-bench */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) parse_range(argv[++i], &min, &max);
        else if (strcmp(argv[i], "--recv-footprint") == 0 && i + 1 < argc) footprint = strtoull(argv[++i], NULL, 10);
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
            /* Receives posted at once: the window, or as many as fit in the
             * footprint (see mpr-bench --recv-footprint). */
            size_t batch = WINDOW;
            if (footprint) {
                batch = footprint / (s ? s : 1);
                if (batch < 1) batch = 1;
                if (batch > WINDOW) batch = WINDOW;
            }
            for (int i = 0; i < warm + iters; i++) {
                if (i == warm) t0 = MPI_Wtime();
                int n = 0;
                if (batch == WINDOW) {
                    if (rank == 1 || bibw)
                        for (int w = 0; w < WINDOW; w++)
                            MPI_Irecv(recvbuf + w * s, (int)s, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &reqs[n++]);
                    if (rank == 0 || bibw)
                        for (int w = 0; w < WINDOW; w++)
                            MPI_Isend(sendbuf, (int)s, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &reqs[n++]);
                    MPI_Waitall(n, reqs, MPI_STATUSES_IGNORE);
                } else {
                    if (rank == 0 || bibw)
                        for (int w = 0; w < WINDOW; w++)
                            MPI_Isend(sendbuf, (int)s, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &reqs[n++]);
                    if (rank == 1 || bibw)
                        for (size_t left = WINDOW; left > 0;) {
                            size_t posted = left < batch ? left : batch;
                            MPI_Request batch_reqs[WINDOW];
                            for (size_t w = 0; w < posted; w++)
                                MPI_Irecv(recvbuf + w * s, (int)s, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &batch_reqs[w]);
                            MPI_Waitall((int)posted, batch_reqs, MPI_STATUSES_IGNORE);
                            left -= posted;
                        }
                    MPI_Waitall(n, reqs, MPI_STATUSES_IGNORE);
                }
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
