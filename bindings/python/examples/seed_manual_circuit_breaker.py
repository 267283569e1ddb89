# The seed's "Manual Testing: Test Circuit Breaker", as written; only the import line
# differs.
import asyncio
from llm_failover import AWSLLMAdapter

async def test_circuit_breaker():
    adapter = AWSLLMAdapter(region_name="us-east-1")
    
    # Check initial state
    health = adapter.get_health_status()
    print(f"Bedrock circuit breaker: {health['providers']['bedrock']['circuit_breaker_state']}")
    print(f"OpenAI circuit breaker: {health['providers']['openai']['circuit_breaker_state']}")
    
    # Force Bedrock circuit breaker open
    adapter.bedrock_circuit_breaker.force_open()
    
    # Make a call - should use OpenAI
    result = await adapter.generate_completion(
        prompt="Test fallback",
        agent_id="test_agent",
        tenant_id="test_tenant",
        model="gpt-4",
        temperature=0.3,
        max_tokens=20,
        response_format="text"
    )
    
    print(f"Provider used: {result['provider']}")  # Should be 'openai'
    
    # Reset circuit breaker
    adapter.bedrock_circuit_breaker.force_close()

asyncio.run(test_circuit_breaker())
