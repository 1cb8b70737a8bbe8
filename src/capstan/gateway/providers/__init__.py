"""One adapter per upstream wire format, all behind `capstan.gateway.providers.base.Provider`."""
