#ifndef CGA_TEST_PROM_CHECK_H
#define CGA_TEST_PROM_CHECK_H

/* Prometheus text exposition format (0.0.4) checks for tests. */

/* Validates a whole exposition as a Prometheus scraper would; on the first violation prints
 * the line number and the rule and exits the test (1). Returns the number of samples. */
int cga_prom_validate(const char *text);

/* Finds the sample whose name and labels are exactly series ("cgalpha_x_total" or
 * "cgalpha_x_total{a=\"b\"}", labels as rendered) and stores its value. Returns 1 when found,
 * 0 when not. */
int cga_prom_value(const char *text, const char *series, double *out);

#endif
