//! Amazon Detective investigations: which findings and entities (`select`), the job table that
//! makes them exactly-once (`jobs`), the enricher's fan-out (`fanout`), the Detective adapter
//! (`detective`) and the investigator's non-blocking loop (`investigator`).

pub mod detective;
pub mod fanout;
pub mod investigator;
pub mod jobs;
pub mod select;
