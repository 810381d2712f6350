"""The shop every email speaks for: its storefront, name, logo, postal address, support
address, sign-off and brand colour. Settings build it (``Settings.shop``); the base layout
(templates/_layout.*.j2) shows it in every email, so a journey's template fills only its
content block."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Shop:
    url: str  # the storefront: every shop link (/account, /help, the default /cart) is under it
    name: str
    postal_address: str  # CAN-SPAM: a valid physical postal address in every commercial email
    support_email: str
    logo_url: str = ""  # empty: the name stands in the header instead
    sign_off: str = ""  # empty: "The <name> team"
    brand_color: str = "#222222"

    def context(self) -> dict[str, Any]:
        """What templates see as ``shop``: the fields, the storefront without a trailing
        slash, the sign-off filled in, the address on one line."""
        fields = asdict(self)
        fields["url"] = self.url.rstrip("/")
        fields["sign_off"] = self.sign_off or f"The {self.name} team"
        fields["postal_address"] = ", ".join(
            line.strip() for line in self.postal_address.splitlines() if line.strip()
        )
        return fields


# What development and test use when a setting is not given (make run, make demo, the tests):
# a shop that is plainly an example, with a storefront that is not the API's host.
DEMO_SHOP = Shop(
    url="https://demo-shop.example",
    name="Demo Shop",
    postal_address="Demo Shop Ltd, 1 Example Street, 10115 Berlin, Germany",
    support_email="help@demo-shop.example",
    logo_url="https://demo-shop.example/logo.png",
    sign_off="The Demo Shop team",
    brand_color="#1f6f5c",
)
