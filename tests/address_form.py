"""The address form the pages share (cart, product page, account), filled in Chromium as a buyer would."""


async def fill_address(scope, *, name: str, line1: str, city: str, country: str, postal_code: str | None = None):
    """Fill the address form within `scope` (a page or a locator); the caller presses its button, whose
    name differs by page."""
    await scope.get_by_label("Full name").fill(name)
    await scope.get_by_label("Address line 1").fill(line1)
    await scope.get_by_label("City", exact=True).fill(city)
    if postal_code is not None:
        await scope.get_by_label("Postal code").fill(postal_code)
    await scope.get_by_label("Country (2 letters, e.g. US)").fill(country)
