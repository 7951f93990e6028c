/* SPDX-License-Identifier: MIT */
/*
 * The proactive-reclaim check of issue 18, read off an overcommit-run
 * result directory (bench/overcommit.c) whose scenario has three runs: the
 * guests unconstrained, with dedup alone, and with dedup and the policy's
 * proactive mode, all with the budget lifted (scenarios/overcommit-proactive.txt,
 * make experiment-proactive).
 *
 *   proactive-report DIR SETTLE_S END_S [UNCONSTRAINED DEDUP PROACTIVE]
 *
 * For each run, over the samples from SETTLE_S to END_S (the scenario's
 * settle and duration: later samples see the VMM tear down): the VMM process's
 * mean Pss and Rss (smaps_rollup, the kernel's numbers) and the guests'
 * host cost by the ledger (pagemap), and each guest's work rate. Then what
 * the proactive run reclaimed beyond what dedup saves (dedup's Pss less the
 * proactive run's, as a share of dedup's and of the unconstrained run's),
 * and each guest's work as a share of its unconstrained run's. Exit status
 * 0 when at least 25% of the dedup run's Pss is reclaimed and every guest
 * keeps 95% of its unconstrained work, 1 otherwise, 2 on errors.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 128
#define MAX_VMS	 64

struct run_means {
	const char *name;
	double pss, rss, used; /* bytes, mean after settling */
	int nvms;
	char vm[MAX_VMS][32];
	double work[MAX_VMS]; /* bytes per second after settling */
	int n;
};

/* Split @line at commas, keeping empty fields (a sample without a ledger
 * row has an empty state): the columns must not shift. */
static int split(char *line, char **f, int max)
{
	int n = 0;
	char *tok;

	line[strcspn(line, "\n")] = 0;
	while (n < max && (tok = strsep(&line, ",")))
		f[n++] = tok;
	return n;
}

/* Read DIR/RUN/samples.csv into @m. 0, or -errno with a message. */
static int read_run(const char *dir, struct run_means *m, double settle, double end)
{
	char path[1024], line[8192], *f[MAX_COLS];
	int t_col = -1, pss_col = -1, rss_col = -1, used_col = -1, work_col[MAX_VMS], nf;
	double t_first = -1, t_last = -1, work_first[MAX_VMS] = {0}, work_last[MAX_VMS] = {0};
	FILE *in;

	snprintf(path, sizeof(path), "%s/%s/samples.csv", dir, m->name);
	in = fopen(path, "re");
	if (!in || !fgets(line, sizeof(line), in)) {
		fprintf(stderr, "proactive-report: %s: %s\n", path, in ? "empty" : strerror(errno));
		if (in)
			fclose(in);
		return -ENOENT;
	}
	nf = split(line, f, MAX_COLS);
	for (int c = 0; c < nf; c++) {
		if (!strcmp(f[c], "t_s"))
			t_col = c;
		else if (!strcmp(f[c], "process_pss"))
			pss_col = c;
		else if (!strcmp(f[c], "process_rss"))
			rss_col = c;
		else if (!strcmp(f[c], "used"))
			used_col = c;
		else if (!strncmp(f[c], "work_bytes_", 11) && m->nvms < MAX_VMS) {
			snprintf(m->vm[m->nvms], sizeof(m->vm[0]), "%s", f[c] + 11);
			work_col[m->nvms++] = c;
		}
	}
	if (t_col < 0 || pss_col < 0 || rss_col < 0 || used_col < 0) {
		fprintf(stderr, "proactive-report: %s: not an overcommit-run samples file\n", path);
		fclose(in);
		return -EINVAL;
	}
	while (fgets(line, sizeof(line), in)) {
		double t;

		nf = split(line, f, MAX_COLS);
		/* From the settling time to the run's end: after it the VMM
		 * tears down (dedup puts merged pages back, Pss climbs). */
		if (nf <= used_col || nf <= pss_col || (t = atof(f[t_col])) < settle || t > end)
			continue;
		m->pss += atof(f[pss_col]);
		m->rss += atof(f[rss_col]);
		m->used += atof(f[used_col]);
		m->n++;
		for (int v = 0; v < m->nvms; v++) {
			double w = work_col[v] < nf ? atof(f[work_col[v]]) : 0;

			if (t_first < 0)
				work_first[v] = w;
			work_last[v] = w;
		}
		if (t_first < 0)
			t_first = t;
		t_last = t;
	}
	fclose(in);
	if (m->n < 2 || t_last - t_first < 1) {
		fprintf(stderr, "proactive-report: %s: fewer than 2 s of samples after %.0f s\n",
			path, settle);
		return -EINVAL;
	}
	m->pss /= m->n;
	m->rss /= m->n;
	m->used /= m->n;
	for (int v = 0; v < m->nvms; v++)
		m->work[v] = (work_last[v] - work_first[v]) / (t_last - t_first);
	return 0;
}

#define MB(x) ((x) / 1048576.0)

int main(int argc, char **argv)
{
	struct run_means r[3] = {
	    {.name = "unconstrained"}, {.name = "dedup"}, {.name = "proactive"}};
	double settle, end, reclaimed, of_dedup, of_unc, worst = -1;
	bool ok;

	if (argc != 4 && argc != 7) {
		fprintf(stderr, "usage: proactive-report DIR SETTLE_S END_S [UNCONSTRAINED DEDUP "
				"PROACTIVE]\n");
		return 2;
	}
	settle = atof(argv[2]);
	end = atof(argv[3]);
	for (int i = 0; argc == 7 && i < 3; i++)
		r[i].name = argv[4 + i];
	for (int i = 0; i < 3; i++)
		if (read_run(argv[1], &r[i], settle, end))
			return 2;
	printf("\nproactive reclaim, means from %.0f to %.0f s (Pss, Rss: the VMM process's "
	       "smaps_rollup; used: the guests' host cost by the ledger)\n",
	       settle, end);
	printf("%-14s %9s %9s %9s\n", "run", "Pss MiB", "Rss MiB", "used MiB");
	for (int i = 0; i < 3; i++)
		printf("%-14s %9.1f %9.1f %9.1f\n", r[i].name, MB(r[i].pss), MB(r[i].rss),
		       MB(r[i].used));
	reclaimed = r[1].pss - r[2].pss;
	of_dedup = r[1].pss > 0 ? reclaimed / r[1].pss : 0;
	of_unc = r[0].pss > 0 ? reclaimed / r[0].pss : 0;
	printf("reclaimed beyond dedup: %.1f MiB of Pss = %.1f%% of the %s run's, %.1f%% of the "
	       "%s run's (ledger: %.1f MiB, %.1f%%)\n",
	       MB(reclaimed), of_dedup * 100, r[1].name, of_unc * 100, r[0].name,
	       MB(r[1].used - r[2].used),
	       r[1].used > 0 ? (r[1].used - r[2].used) / r[1].used * 100 : 0.0);
	printf("guest work as a share of %s (%.0f to %.0f s):", r[0].name, settle, end);
	for (int v = 0; v < r[2].nvms; v++) {
		double base = -1, share;

		for (int u = 0; u < r[0].nvms; u++)
			if (!strcmp(r[0].vm[u], r[2].vm[v]))
				base = r[0].work[u];
		if (base <= 0)
			continue;
		share = r[2].work[v] / base;
		printf(" %s %.1f%%", r[2].vm[v], share * 100);
		if (worst < 0 || share < worst)
			worst = share;
	}
	printf("\n");
	ok = of_dedup >= 0.25 && worst >= 0.95;
	printf("issue 18: at least 25%% reclaimed beyond dedup: %s; every guest within 5%% of "
	       "its unconstrained work: %s\n",
	       of_dedup >= 0.25 ? "yes" : "NO", worst >= 0.95 ? "yes" : "NO");
	return ok ? 0 : 1;
}
