"""The faces: the command line (`rag`) and the Gradio web UI. Only these turn errors into user text."""
