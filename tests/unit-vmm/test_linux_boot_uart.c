/* SPDX-License-Identifier: MIT */
/*
 * The 8250 UART of Linux guests (vmm/devices/uart_8250.c), driven the way Linux's
 * serial8250 driver drives it: its probe (scratch, loopback, FIFO), the
 * THR-empty interrupt test and interrupt-driven transmit, and the line
 * buffering of the console.
 */
#include <stdio.h>
#include <string.h>

#include "rf_test.h"

#include "devices/uart_8250.h"

struct sink {
	char lines[8][UART_LINE_MAX + 1];
	unsigned n;
	int level, edges;
};

static void on_line(void *opaque, const char *line)
{
	struct sink *s = opaque;

	if (s->n < 8)
		snprintf(s->lines[s->n], sizeof(s->lines[0]), "%s", line);
	s->n++;
}

static void on_irq(void *opaque, int level)
{
	struct sink *s = opaque;

	s->edges += level && !s->level;
	s->level = level;
}

static void put(struct uart8250 *u, const char *s)
{
	while (*s)
		uart8250_write(u, 0, (uint8_t)*s++);
}

/* Linux's autoconfig: scratch register, loopback modem lines, FIFO detection. */
static void test_probe(void **state)
{
	struct uart8250 u;
	struct sink s = {0};

	(void)state;
	uart8250_init(&u, on_line, on_irq, &s);
	uart8250_write(&u, 7, 0xa5);
	assert_int_equal(uart8250_read(&u, 7), 0xa5);
	uart8250_write(&u, 4, 0x10 | 0x0a);		     /* LOOP | RTS | OUT2 */
	assert_int_equal(uart8250_read(&u, 6) & 0xf0, 0x90); /* CTS | DCD */
	uart8250_write(&u, 4, 0);
	uart8250_write(&u, 2, 0x01); /* enable FIFOs */
	assert_int_equal(uart8250_read(&u, 2) & 0xc0, 0xc0);
	assert_int_equal(uart8250_read(&u, 5) & 0x60, 0x60); /* THRE, TEMT */
	/* DLAB: divisor latch instead of THR/IER. */
	uart8250_write(&u, 3, 0x80);
	uart8250_write(&u, 0, 0x01);
	uart8250_write(&u, 1, 0x00);
	assert_int_equal(uart8250_read(&u, 0), 0x01);
	uart8250_write(&u, 3, 0x03);
	assert_int_equal(s.n, 0); /* divisor writes are not output */
	/* Loopback output never leaves the chip. */
	uart8250_write(&u, 4, 0x10);
	put(&u, "hidden\n");
	uart8250_write(&u, 4, 0);
	assert_int_equal(s.n, 0);
}

/* serial8250_do_startup: THRE must be re-asserted each time THRI is enabled. */
static void test_thre_interrupt(void **state)
{
	struct uart8250 u;
	struct sink s = {0};

	(void)state;
	uart8250_init(&u, on_line, on_irq, &s);
	uart8250_write(&u, 1, 0x02);
	assert_int_equal(s.level, 1);
	assert_int_equal(uart8250_read(&u, 2) & 0x0f, 0x02); /* THRI pending */
	assert_int_equal(s.level, 0);			     /* reading IIR acknowledged it */
	assert_int_equal(uart8250_read(&u, 2) & 0x0f, 0x01); /* nothing pending */
	uart8250_write(&u, 1, 0);
	uart8250_write(&u, 1, 0x02);
	assert_int_equal(uart8250_read(&u, 2) & 0x0f, 0x02); /* re-asserted */

	/* Interrupt-driven transmit: each THR write empties at once and raises it again. */
	s.edges = 0;
	put(&u, "ab");
	assert_int_equal(s.level, 1);
	assert_int_equal(uart8250_read(&u, 2) & 0x0f, 0x02);
	put(&u, "c");
	assert_int_equal(s.edges, 2);
	/* Interrupts off: no line. */
	uart8250_write(&u, 1, 0);
	assert_int_equal(s.level, 0);
	put(&u, "d");
	assert_int_equal(s.level, 0);
	assert_int_equal(u.tx_bytes, 4);
}

static void test_lines(void **state)
{
	struct uart8250 u;
	struct sink s = {0};
	char longline[UART_LINE_MAX + 11];

	(void)state;
	uart8250_init(&u, on_line, on_irq, &s);
	put(&u, "hello\r\nworld\n\n");
	assert_int_equal(s.n, 3);
	assert_string_equal(s.lines[0], "hello");
	assert_string_equal(s.lines[1], "world");
	assert_string_equal(s.lines[2], "");
	/* A line longer than the buffer comes out in pieces, nothing lost. */
	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = 0;
	put(&u, longline);
	assert_int_equal(s.n, 4);
	assert_int_equal(strlen(s.lines[3]), UART_LINE_MAX);
	put(&u, "\n");
	assert_int_equal(s.n, 5);
	assert_int_equal(strlen(s.lines[4]), 10);
	/* A partial line is flushed on request (the VM ends). */
	put(&u, "tail");
	uart8250_flush(&u);
	assert_int_equal(s.n, 6);
	assert_string_equal(s.lines[5], "tail");
	uart8250_flush(&u);
	assert_int_equal(s.n, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_probe),
	    cmocka_unit_test(test_thre_interrupt),
	    cmocka_unit_test(test_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
