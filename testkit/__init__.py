"""What tests/, scripts/ and bench/ share to drive the real parts: dev servers, a stack (worker
+ starter API on a store and a catcher), throwaway databases, sample shop data, reading the
caught mail, and time zones where it is a chosen hour now. The product never imports it."""
