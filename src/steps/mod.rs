//! The installation steps and the engine that runs them (check / apply / verify, journaled, resumable).
