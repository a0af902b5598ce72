//! `nebula rekey` (filled in below).
