"""Pushes finalized invoices to Stripe and maps their payment status back."""
