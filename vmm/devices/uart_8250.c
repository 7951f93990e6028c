/* SPDX-License-Identifier: MIT */
/*
 * 8250/16550A UART; see uart_8250.h. Register layout (offset from the base
 * port; DLAB is LCR bit 7):
 *   0  THR (write) / RBR (read)      DLL when DLAB
 *   1  IER                           DLM when DLAB
 *   2  IIR (read) / FCR (write)
 *   3  LCR   4 MCR   5 LSR   6 MSR   7 SCR
 */
#include "devices/uart_8250.h"

#include <string.h>

#define IER_THRI   0x02
#define IIR_NO_INT 0x01
#define IIR_THRI   0x02
#define IIR_FIFO   0xc0 /* FIFOs enabled: what makes Linux call it a 16550A */
#define FCR_ENABLE 0x01
#define LCR_DLAB   0x80
#define MCR_DTR	   0x01
#define MCR_RTS	   0x02
#define MCR_OUT1   0x04
#define MCR_OUT2   0x08
#define MCR_LOOP   0x10
#define LSR_THRE   0x20
#define LSR_TEMT   0x40
#define MSR_CTS	   0x10
#define MSR_DSR	   0x20
#define MSR_RI	   0x40
#define MSR_DCD	   0x80

void uart8250_init(struct uart8250 *u, void (*emit_line)(void *, const char *),
		   void (*set_irq)(void *, int), void *opaque)
{
	memset(u, 0, sizeof(*u));
	u->emit_line = emit_line;
	u->set_irq = set_irq;
	u->opaque = opaque;
	u->dll = 12; /* 9600 baud until the driver sets it */
}

static void update_irq(struct uart8250 *u)
{
	int level = (u->ier & IER_THRI) && u->thre_pending;

	if (level != u->irq_level) {
		u->irq_level = level;
		u->irqs += level;
		if (u->set_irq)
			u->set_irq(u->opaque, level);
	}
}

void uart8250_flush(struct uart8250 *u)
{
	if (!u->line_len)
		return;
	u->line[u->line_len] = 0;
	if (u->emit_line)
		u->emit_line(u->opaque, u->line);
	u->line_len = 0;
}

static void transmit(struct uart8250 *u, uint8_t c)
{
	u->tx_bytes++;
	if (u->mcr & MCR_LOOP)
		return; /* loopback: nothing leaves the chip (and nothing is received here) */
	if (c == '\n') {
		u->line[u->line_len] = 0;
		if (u->emit_line)
			u->emit_line(u->opaque, u->line);
		u->line_len = 0;
		return;
	}
	if (c == '\r')
		return;
	if (u->line_len == UART_LINE_MAX)
		uart8250_flush(u);
	u->line[u->line_len++] = (char)c;
}

uint8_t uart8250_read(struct uart8250 *u, unsigned reg)
{
	uint8_t v = 0;

	switch (reg & 7) {
	case 0:
		v = (u->lcr & LCR_DLAB) ? u->dll : 0; /* nothing is ever received */
		break;
	case 1:
		v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
		break;
	case 2:
		if ((u->ier & IER_THRI) && u->thre_pending) {
			v = IIR_THRI;
			u->thre_pending = 0; /* reading IIR acknowledges THR empty */
		} else {
			v = IIR_NO_INT;
		}
		if (u->fcr & FCR_ENABLE)
			v |= IIR_FIFO;
		break;
	case 3:
		v = u->lcr;
		break;
	case 4:
		v = u->mcr;
		break;
	case 5:
		v = LSR_THRE | LSR_TEMT; /* transmitted instantly */
		break;
	case 6:
		if (u->mcr & MCR_LOOP) /* the modem outputs looped back to the inputs */
			v = ((u->mcr & MCR_DTR) ? MSR_DSR : 0) |
			    ((u->mcr & MCR_RTS) ? MSR_CTS : 0) |
			    ((u->mcr & MCR_OUT1) ? MSR_RI : 0) |
			    ((u->mcr & MCR_OUT2) ? MSR_DCD : 0);
		else
			v = MSR_DCD | MSR_DSR | MSR_CTS;
		break;
	case 7:
		v = u->scr;
		break;
	}
	update_irq(u);
	return v;
}

void uart8250_write(struct uart8250 *u, unsigned reg, uint8_t val)
{
	switch (reg & 7) {
	case 0:
		if (u->lcr & LCR_DLAB) {
			u->dll = val;
		} else {
			transmit(u, val);
			u->thre_pending = 1;
		}
		break;
	case 1:
		if (u->lcr & LCR_DLAB) {
			u->dlm = val;
		} else {
			/* Enabling THRI with the transmitter empty raises it at once. */
			if ((val & IER_THRI) && !(u->ier & IER_THRI))
				u->thre_pending = 1;
			u->ier = val & 0x0f;
		}
		break;
	case 2:
		u->fcr = val & (FCR_ENABLE | 0xc0);
		break;
	case 3:
		u->lcr = val;
		break;
	case 4:
		u->mcr = val & 0x1f;
		break;
	case 7:
		u->scr = val;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
	update_irq(u);
}
