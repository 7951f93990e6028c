/* SPDX-License-Identifier: MIT */
/*
 * An 8250/16550A UART, transmit side only, as Linux's serial8250 driver
 * drives it on port 0x3f8 (console=ttyS0): it passes the driver's probe
 * (scratch register, loopback, FIFO detection), transmits instantly (the
 * transmitter is always empty) and raises the THR-empty interrupt when it is
 * enabled. Received data never arrives.
 *
 * Output is buffered into lines: one callback per line (without the line
 * end, '\r' dropped), so the VMM writes a line to the log in one go rather
 * than one host write per character; a line longer than UART_LINE_MAX is cut
 * into pieces. The device itself makes no system call: the embedder gives it
 * a line sink and an interrupt line (level: 1 while an interrupt is pending).
 *
 * Not thread-safe: one vCPU thread owns it.
 */
#ifndef RF_VMM_UART_8250_H
#define RF_VMM_UART_8250_H

#include <stdint.h>

#define UART_COM1_PORT 0x3f8
#define UART_COM1_IRQ  4
#define UART_LINE_MAX  512

struct uart8250 {
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	int thre_pending; /* THR-empty interrupt raised and not yet read from IIR */
	int irq_level;	  /* last level given to set_irq */
	char line[UART_LINE_MAX + 1];
	unsigned line_len;
	uint64_t tx_bytes, irqs; /* bytes transmitted, interrupts raised (0 -> 1) */
	void (*emit_line)(void *opaque, const char *line);
	void (*set_irq)(void *opaque, int level);
	void *opaque;
};

void uart8250_init(struct uart8250 *u, void (*emit_line)(void *, const char *),
		   void (*set_irq)(void *, int), void *opaque);
/* A guest access to register @reg (0-7, relative to the base port). */
uint8_t uart8250_read(struct uart8250 *u, unsigned reg);
void uart8250_write(struct uart8250 *u, unsigned reg, uint8_t val);
/* Emit what is buffered as a (partial) line, e.g. when the VM ends. */
void uart8250_flush(struct uart8250 *u);

#endif
