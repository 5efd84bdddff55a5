"""enpire_agent_bridge."""
